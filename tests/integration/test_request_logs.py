"""JSON logs with a request id on every line of a request; nothing secret in them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import ServiceProcess, wait_for

pytestmark = pytest.mark.timeout(60)

SECRET_CODE = "print('the-code-itself-' + 'never-logged')"


@pytest.fixture(scope="module")
def svc() -> Iterator[ServiceProcess]:
    service = ServiceProcess(log_format="json", access_log="true")
    try:
        yield service
    finally:
        service.stop()


def lines(svc: ServiceProcess) -> list[dict[str, Any]]:
    parsed = []
    for line in svc.output().splitlines():
        if line.strip():
            parsed.append(json.loads(line))  # every line is JSON, or this fails
    return parsed


def test_every_line_of_a_request_carries_its_id(svc: ServiceProcess) -> None:
    response = svc.client.post(
        "/execute", json={"code": SECRET_CODE}, headers={"X-Request-ID": "job-42.retry:1"}
    )
    assert response.status_code == 200 and response.headers["x-request-id"] == "job-42.retry:1"

    def of_mine() -> list[dict[str, Any]] | None:
        found = [n for n in lines(svc) if n.get("requestId") == "job-42.retry:1"]
        return found if len(found) >= 2 else None  # the execution's line and the access line

    mine = wait_for(of_mine, what="the request's log lines", state=lambda: lines(svc)[-5:])
    loggers = {n["logger"] for n in mine}
    assert {"controller.execution.service", "controller.access"} <= loggers, mine
    access = next(n for n in mine if n["logger"] == "controller.access")
    assert (access["method"], access["path"], access["status"]) == ("POST", "/execute", 200)
    assert isinstance(access["ms"], float) and access["level"] == "INFO"
    assert access["time"].endswith("Z")


def test_an_unsafe_id_is_replaced_and_nothing_secret_is_logged(svc: ServiceProcess) -> None:
    response = svc.client.get(
        "/browser/sessions?token=query-secret-value", headers={"X-Request-ID": "a b"}
    )
    given = response.headers["x-request-id"]
    assert given != "a b" and len(given) == 32 and given.isalnum()
    denied = svc.client.get("/browser/sessions", headers={"Authorization": "Bearer wrong"})
    assert denied.status_code == 401 and "x-request-id" in denied.headers  # before auth
    wait_for(lambda: any(n.get("status") == 401 for n in lines(svc)), what="the 401's line")
    text = svc.output()
    for secret in ("query-secret-value", "never-logged", svc.token, "Bearer wrong"):
        assert secret not in text, secret
    paths = {n["path"] for n in lines(svc) if n["logger"] == "controller.access"}
    assert "/browser/sessions" in paths
