"""What the controller reads from a BrowserSession: the public record and creation refusals."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import pytest

from controller.browser.client import AgentClient
from controller.browser.sessions import new_session_id
from controller.errors import AgentRefused, BrowserUnavailable, NotFound
from controller.keys import Defaults
from controller.kubernetes.api import (
    KubeApi,
    KubeForbidden,
    KubeNotFound,
    KubeQuotaExceeded,
    KubeUnavailable,
)
from controller.kubernetes.manifests import LABEL_KEY
from controller.kubernetes.resources import BrowserSessionResource
from controller.kubernetes.sessions import KubernetesSessions, refusal, session_info
from controller.settings import Settings

BODY = {
    "metadata": {"name": "bs-1", "creationTimestamp": "2026-12-02T12:00:00Z"},
    "spec": {"device": "mobile", "idleTimeoutS": 60, "maxLifetimeS": 600, "labels": {"who": "a"}},
    "status": {
        "phase": "Ready",
        "device": "mobile",
        "viewport": {"width": 412, "height": 839},
        "userAgent": "Mozilla/5.0 (Linux; Android 14; Pixel 7)",
        "isMobile": True,
        "tabId": "t1",
        "readyAt": "2026-12-02T12:00:00.200Z",
        "lastUsedAt": "2026-12-02T12:05:00.000Z",
    },
}


def test_the_record_comes_from_spec_and_status() -> None:
    info = session_info(BrowserSessionResource.parse(BODY))
    assert info.sessionId == "bs-1"
    assert (info.device, info.isMobile, info.labels) == ("mobile", True, {"who": "a"})
    assert info.viewport is not None and info.viewport.width == 412
    assert info.lastUsedAt == datetime(2026, 12, 2, 12, 5, tzinfo=UTC)
    # Idle deadline (12:06) before the end of the lifetime (12:10).
    assert info.expiresAt == datetime(2026, 12, 2, 12, 6, tzinfo=UTC)


def test_the_lifetime_bounds_the_deadline() -> None:
    body = {**BODY, "status": {**BODY["status"], "lastUsedAt": "2026-12-02T12:09:30Z"}}
    expires = session_info(BrowserSessionResource.parse(body)).expiresAt
    assert expires == datetime(2026, 12, 2, 12, 10, tzinfo=UTC)


def test_a_browsers_refusal_reaches_the_creator_as_it_came() -> None:
    error = {
        "status": 422,
        "code": "invalid_request",
        "message": "unknown device 'Nokia'",
        "details": [{"field": "device", "rule": "unknown_device", "message": "unknown"}],
    }
    failed = {**BODY, "status": {"phase": "Failed", "reason": "refused", "error": error}}
    refused = refusal(BrowserSessionResource.parse(failed))
    assert isinstance(refused, AgentRefused)
    assert refused.status_code == 422
    assert refused.body()["details"][0]["rule"] == "unknown_device"


def test_a_platform_failure_is_a_503_with_the_reason() -> None:
    failed = {**BODY, "status": {"phase": "Failed", "reason": "the browser pod cannot start"}}
    refused = refusal(BrowserSessionResource.parse(failed))
    assert isinstance(refused, BrowserUnavailable)
    assert "cannot start" in refused.message


DEFAULTS = Defaults(4, 32, 4)
CALLER = DEFAULTS.caller()


class RecordingApi:
    """Stands in for the API server's edge: records what reaches it, finds ``found``."""

    def __init__(
        self, found: dict[str, Any] | None = None, failure: Exception | None = None
    ) -> None:
        self.asked: list[str] = []
        self.deleted: list[str] = []
        self.found = found
        self.failure = failure

    async def read_custom(self, resource: Any, name: str) -> dict[str, Any]:
        self.asked.append(name)
        if self.failure is not None:
            raise self.failure
        if self.found is None or self.found["metadata"]["name"] != name:
            raise KubeNotFound(f"no {name}", 404)
        return self.found

    async def delete_custom(self, resource: Any, name: str) -> bool:
        if self.failure is not None:
            raise self.failure
        self.asked.append(name)
        self.deleted.append(name)
        return self.found is not None


@pytest.mark.parametrize("session_id", ["..", "bs-1", "BS-" + "a" * 20, "bs-%2e", "x" * 300])
async def test_what_cannot_be_a_session_id_is_a_404_without_asking_the_api_server(
    session_id: str,
) -> None:
    api = RecordingApi()
    settings = Settings(_env_file=None, auth_token="a" * 32)  # type: ignore[call-arg]
    sessions = KubernetesSessions(settings, AgentClient(), cast(KubeApi, api))
    with pytest.raises(NotFound):
        await sessions.find(session_id, CALLER)
    with pytest.raises(NotFound):
        await sessions.delete(session_id, CALLER)
    assert api.asked == []
    real = new_session_id()  # a well-formed one is looked up, and absent: 404 too
    with pytest.raises(NotFound):
        await sessions.find(real, CALLER)
    assert api.asked == [real]
    await sessions.client.close()


async def test_another_callers_session_is_not_found_and_never_deleted() -> None:
    name = new_session_id()
    theirs = {**BODY, "metadata": {**BODY["metadata"], "name": name}}
    theirs["metadata"]["labels"] = {LABEL_KEY: "team-a"}
    api = RecordingApi(theirs)
    settings = Settings(_env_file=None, auth_token="a" * 32)  # type: ignore[call-arg]
    sessions = KubernetesSessions(settings, AgentClient(), cast(KubeApi, api))
    team_b = DEFAULTS.caller("team-b")
    for attempt in (sessions.find(name, team_b), sessions.delete(name, team_b)):
        with pytest.raises(NotFound, match="no browser session"):
            await attempt
    assert api.deleted == []
    assert (await sessions.find(name, DEFAULTS.caller("team-a"))).info().sessionId == name
    await sessions.client.close()


@pytest.mark.parametrize(
    "failure",
    [
        KubeUnavailable("cannot read BrowserSession: the API server is unreachable"),
        KubeForbidden("cannot read BrowserSession: forbidden by RBAC or admission", 403),
        KubeQuotaExceeded("the namespace's ResourceQuota is full", 403),
    ],
)
async def test_an_api_failure_is_browser_unavailable_never_sandbox_unavailable(
    failure: Exception,
) -> None:
    api = RecordingApi(failure=failure)
    settings = Settings(_env_file=None, auth_token="a" * 32)  # type: ignore[call-arg]
    sessions = KubernetesSessions(settings, AgentClient(), cast(KubeApi, api))
    for attempt in (
        sessions.find(new_session_id(), CALLER),
        sessions.delete(new_session_id(), CALLER),
        sessions.call(new_session_id(), CALLER, "GET", "/tabs"),
    ):
        with pytest.raises(BrowserUnavailable) as refused:
            await attempt
        assert refused.value.body()["error"] == "browser_unavailable"
        assert str(failure) in refused.value.message
    await sessions.client.close()


def test_a_resource_of_the_wrong_shape_reads_as_absent_fields() -> None:
    """Anyone with write access to the namespace could have shaped it: nothing in it is
    trusted to have a type."""
    odd = BrowserSessionResource.parse(
        {
            "metadata": {"name": "bs-x", "labels": "not a map", "creationTimestamp": 7},
            "spec": {"idleTimeoutS": "600", "labels": ["a"], "device": None},
            "status": {"phase": 3, "viewport": "wide", "error": {"status": True}, "pod": ""},
        }
    )
    assert (odd.name, odd.owner, odd.idle_timeout_s, odd.labels) == ("bs-x", "default", 0, {})
    assert odd.status.phase is None and odd.status.pod is None and odd.status.error is None
    assert odd.status.viewport is None and not odd.settled and odd.open
