"""/metrics after a known sequence of requests (in process, fake backends)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from runner.contract import Denial, Job, Outcome

from controller.metrics import browser_operation
from tests.inprocess import FakeExecutionBackend, InProcess, printed, running_app


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, frozenset(labels.items())), 0.0)


def failing(job: Job) -> Outcome:
    denial = Denial("network", "example.com:443", "no network")
    return dataclasses.replace(printed(job), exit_code=1, denials=(denial,))


async def scrape(app: InProcess) -> str:
    response = await app.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.text


async def test_executions_are_counted_by_outcome_and_key(tmp_path: Path) -> None:
    runs = iter([printed, failing])
    backend = FakeExecutionBackend(outcome=lambda job: next(runs)(job))
    async with running_app(tmp_path, execution=backend) as app:
        before = await scrape(app)
        assert value(before, "sandbox_executions_total", outcome="exited", key="default") == 0
        assert value(before, "sandbox_warm_sandboxes") == 3
        for code in ("print(1)", "import sys; sys.exit(1)"):
            assert (await app.client.post("/execute", json={"code": code})).status_code == 200
        assert (await app.client.post("/execute", json={"code": 7})).status_code == 422
        text = await scrape(app)
    assert value(text, "sandbox_executions_total", outcome="exited", key="default") == 1
    assert value(text, "sandbox_executions_total", outcome="failed", key="default") == 1
    assert value(text, "sandbox_executions_total", outcome="invalid", key="default") == 0, (
        "a body that is not an ExecuteRequest never reaches the service"
    )
    assert value(text, "sandbox_violations_total", kind="network") == 1
    assert value(text, "sandbox_execution_queue_seconds_count") == 2
    assert value(text, "sandbox_execution_run_seconds_count") == 2
    assert value(text, "sandbox_execution_seconds_count") == 2
    assert (
        value(text, "sandbox_http_requests_total", route="/execute", method="POST", status="200")
        == 2
    )
    assert (
        value(text, "sandbox_http_requests_total", route="/execute", method="POST", status="422")
        == 1
    )
    assert value(text, "sandbox_executions_running") == 0
    assert value(text, "sandbox_executions_queued") == 0


async def test_refusals_are_counted_and_routes_are_templates(tmp_path: Path) -> None:
    async with running_app(tmp_path, max_code_bytes=10) as app:
        too_long = await app.client.post("/execute", json={"code": "x" * 11})
        assert too_long.status_code == 422
        created = await app.client.post("/browser/sessions", json={})
        sid = created.json()["sessionId"]
        assert (await app.client.get(f"/browser/sessions/{sid}/tabs")).status_code == 200
        assert (await app.client.delete(f"/browser/sessions/{sid}")).status_code == 204
        assert (await app.client.get("/browser/sessions/bs-nope")).status_code == 404
        text = await scrape(app)
    assert value(text, "sandbox_executions_total", outcome="invalid", key="default") == 1
    ops = "sandbox_browser_operations_total"
    assert value(text, ops, operation="create", status="201") == 1
    assert value(text, ops, operation="tabs", status="200") == 1
    assert value(text, ops, operation="delete", status="204") == 1
    assert value(text, ops, operation="get", status="404") == 1
    routes = {labels for (name, labels) in samples(text) if name == "sandbox_http_requests_total"}
    assert not [r for r in routes if sid in dict(r)["route"]]  # no ids in labels


async def test_metrics_need_the_token_unless_public(tmp_path: Path) -> None:
    async with running_app(tmp_path) as app, app.other_client() as anonymous:
        assert (await anonymous.get("/metrics")).status_code == 401
        assert (await scrape(app)).count("sandbox_http_requests_total{") >= 1
        unrouted = await scrape(app)
    # The refused scrape is counted too, without a route it never reached.
    assert (
        value(unrouted, "sandbox_http_requests_total", route="unrouted", method="GET", status="401")
        == 1
    )
    public = running_app(tmp_path / "public", metrics_public=True)
    async with public as app, app.other_client() as anonymous:
        assert (await anonymous.get("/metrics")).status_code == 200


@pytest.mark.parametrize(
    ("template", "method", "operation"),
    [
        ("/browser/sessions", "POST", "create"),
        ("/browser/sessions", "GET", "list"),
        ("/browser/sessions/{session_id}", "GET", "get"),
        ("/browser/sessions/{session_id}", "DELETE", "delete"),
        ("/browser/sessions/{session_id}/navigate", "POST", "navigate"),
        ("/browser/sessions/{session_id}/tabs", "POST", "open_tab"),
        ("/browser/sessions/{session_id}/tabs/{tab_id}", "DELETE", "close_tab"),
        ("/browser/sessions/{session_id}/screenshot", "GET", "screenshot"),
    ],
)
def test_browser_operations_are_named_by_route(template: str, method: str, operation: str) -> None:
    assert browser_operation(template, method) == operation
