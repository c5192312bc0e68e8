"""The session registry, its reaper and the agent-error mapping (in process, fake agents)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.inprocess import FakeAgents, FakeSessionBackend, InProcess, running_app
from tests.support import until

B = "/browser/sessions"


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[InProcess]:
    async with running_app(tmp_path, max_browser_sessions=2) as running:
        yield running


async def create(app: InProcess, **body: object) -> str:
    response = await app.client.post(B, json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["sessionId"])


async def test_a_session_is_created_used_and_deleted(app: InProcess) -> None:
    sid = await create(app, device="mobile", labels={"caller": "agent-7"})
    assert sid.startswith("bs-") and "agent-7" not in sid
    navigated = await app.client.post(f"{B}/{sid}/navigate", json={"url": "https://example.com"})
    assert navigated.json()["url"] == "https://example.com"
    sent = app.agents.seen[-1]
    assert sent.headers["authorization"] == "Bearer token-1-" + "x" * 16
    assert b'"timeoutMs":30000' in sent.content  # the settings' default, filled in
    listed = (await app.client.get(B)).json()
    assert [s["sessionId"] for s in listed["sessions"]] == [sid]
    assert listed["warmAgents"] == 1

    assert (await app.client.delete(f"{B}/{sid}")).status_code == 204
    assert app.sessions.released == app.sessions.acquired
    assert (await app.client.get(f"{B}/{sid}")).status_code == 404


async def test_sessions_beyond_the_maximum_are_429(app: InProcess) -> None:
    await create(app)
    await create(app)
    refused = await app.client.post(B)
    assert refused.status_code == 429
    assert "MAX_BROWSER_SESSIONS" in refused.json()["message"]


async def test_bounds_and_devices_are_checked_before_an_agent_is_taken(app: InProcess) -> None:
    too_long = await app.client.post(B, json={"idleTimeoutS": 999_999})
    assert too_long.status_code == 422
    assert too_long.json()["details"][0]["field"] == "idleTimeoutS"
    unknown = await app.client.post(B, json={"device": "Nokia 3310"})
    assert unknown.status_code == 422
    assert unknown.json()["details"][0]["rule"] == "unknown_device"
    assert app.sessions.acquired == []


async def test_the_reaper_closes_idle_sessions_and_releases_their_agents(app: InProcess) -> None:
    sid = await create(app, idleTimeoutS=1)
    kept = await create(app, idleTimeoutS=60)

    async def reaped() -> bool:
        return (await app.client.get(f"{B}/{sid}")).status_code == 404

    await until(reaped, what="the idle session to be reaped")
    assert [h.agent_id for h in app.sessions.released] == ["ag-1"]
    assert (await app.client.get(f"{B}/{kept}")).status_code == 200


async def test_the_reaper_closes_sessions_at_the_end_of_their_lifetime(app: InProcess) -> None:
    sid = await create(app, maxLifetimeS=1, idleTimeoutS=60)

    async def reaped() -> bool:  # each get is a use: only the lifetime can end it
        return (await app.client.get(f"{B}/{sid}")).status_code == 404

    await until(reaped, interval_s=0.05, what="the session's lifetime to end")
    assert len(app.sessions.released) == 1


def answer(status: int, body: object) -> object:
    return lambda _request: httpx.Response(status, json=body)


@pytest.mark.parametrize(
    ("failure", "status", "error"),
    [
        (httpx.ConnectError("refused"), 502, "bad_gateway"),
        (httpx.ReadTimeout("slow"), 504, "gateway_timeout"),
        (httpx.RemoteProtocolError("garbage"), 502, "bad_gateway"),
        (answer(401, {"error": "unauthorized", "message": "no"}), 502, "bad_gateway"),
        (answer(418, {"error": "teapot", "message": "no"}), 502, "bad_gateway"),
        (answer(409, ["not", "an", "object"]), 502, "bad_gateway"),
        (
            answer(
                409,
                {
                    "error": "element_timeout",
                    "message": "m",
                    "details": [
                        {"field": "selector", "rule": "timeout", "message": "x", "junk": 1}
                    ],
                },
            ),
            409,
            "element_timeout",
        ),
        (
            answer(403, {"error": "destination_forbidden", "message": "refused"}),
            403,
            "destination_forbidden",
        ),
    ],
)
async def test_agent_failures_map_to_the_products_errors(
    tmp_path: Path, failure: object, status: int, error: str
) -> None:
    agents = FakeAgents(override={"/action": failure})  # type: ignore[dict-item]
    async with running_app(tmp_path, agents=agents) as app:
        sid = await create(app)
        response = await app.client.post(
            f"{B}/{sid}/action", json={"action": "click", "selector": "#x"}
        )
        assert response.status_code == status, response.text
        assert response.json()["error"] == error
        if error == "element_timeout":
            assert response.json()["details"] == [
                {"field": "selector", "rule": "timeout", "message": "x"}
            ]
        # The agent is alive: the session survives an error of one call.
        assert (await app.client.get(f"{B}/{sid}")).status_code == 200


async def test_a_dead_agent_closes_its_session(tmp_path: Path) -> None:
    agents = FakeAgents(override={"/tabs": httpx.ConnectError("gone")})
    async with running_app(tmp_path, agents=agents) as app:
        sid = await create(app)
        app.sessions.dead.add("ag-1")
        response = await app.client.get(f"{B}/{sid}/tabs")
        assert response.status_code == 502
        assert "died" in response.json()["message"]
        assert (await app.client.get(f"{B}/{sid}")).status_code == 404
        assert [h.agent_id for h in app.sessions.released] == ["ag-1"]


async def test_an_agent_that_answers_nonsense_at_creation_is_released(tmp_path: Path) -> None:
    agents = FakeAgents(override={"/session": answer(200, {"device": 7})})  # type: ignore[dict-item]
    async with running_app(tmp_path, agents=agents) as app:
        response = await app.client.post(B)
        assert response.status_code == 502
        assert "invalid ConfigureResponse" in response.json()["message"]
        await asyncio.sleep(0)  # the release runs in the background
        assert [h.agent_id for h in app.sessions.released] == ["ag-1"]
        assert (await app.client.get(B)).json()["sessions"] == []


async def test_an_agent_refusing_the_device_goes_back_to_the_pool(tmp_path: Path) -> None:
    refusal = {"error": "invalid_request", "message": "device: unknown", "details": []}
    agents = FakeAgents(override={"/session": answer(422, refusal)})  # type: ignore[dict-item]
    async with running_app(tmp_path, agents=agents) as app:
        response = await app.client.post(B, json={"device": "desktop"})
        assert response.status_code == 422
        assert [h.agent_id for h in app.sessions.given_back] == ["ag-1"]
        assert app.sessions.released == []


async def test_no_agent_is_503(tmp_path: Path) -> None:
    sessions = FakeSessionBackend(fail_with="cannot start a browser agent: no chromium")
    async with running_app(tmp_path, sessions=sessions) as app:
        response = await app.client.post(B)
    assert response.status_code == 503
    assert response.json()["error"] == "browser_unavailable"


async def test_bad_urls_never_reach_an_agent(app: InProcess) -> None:
    sid = await create(app)
    before = len(app.agents.seen)
    for url in ("file:///etc/passwd", "javascript:alert(1)", "http://user:pw@example.com/"):
        response = await app.client.post(f"{B}/{sid}/navigate", json={"url": url})
        assert response.status_code == 422
    assert len(app.agents.seen) == before


def configured_network(app: InProcess) -> object:
    """The network the last session's agent was given (its POST /session)."""
    (configure, *_) = [r for r in reversed(app.agents.seen) if r.url.path == "/session"]
    return json.loads(configure.content)["network"]


async def test_without_allowed_domains_a_browser_has_the_public_web_less_the_denied(
    tmp_path: Path,
) -> None:
    async with running_app(tmp_path, network_denied_domains="*.ads.test") as app:
        await create(app)
        assert configured_network(app) == {
            "allowedDomains": None,  # every name
            "deniedDomains": ["*.ads.test"],
            "allowedPorts": [80, 443],
            "internalHosts": {},
        }
        # A session may still hold its own browser to a few names; never a denied one.
        await create(app, network={"allowedDomains": ["Docs.Example.com", "*.cdn.test"]})
        network = configured_network(app)
        assert isinstance(network, dict)
        assert network["allowedDomains"] == ["*.cdn.test", "docs.example.com"]
        denied = await app.client.post(B, json={"network": {"allowedDomains": ["x.ads.test"]}})
        assert denied.status_code == 422
        assert denied.json()["details"][0] == {
            "field": "network.allowedDomains[0]",
            "rule": "denied",
            "message": "x.ads.test is denied by the deployment's policy",
        }


async def test_with_allowed_domains_a_browser_is_held_to_them(tmp_path: Path) -> None:
    ceiling = {
        "network_allowed_domains": "*.example.com,files.test",
        "network_internal_hosts": "files.test=127.0.0.1",
        "network_ask_url": "http://127.0.0.1:9/ask",  # for executions only
        "max_browser_sessions": 4,
    }
    async with running_app(tmp_path, **ceiling) as app:
        await create(app)
        assert configured_network(app) == {
            "allowedDomains": ["*.example.com", "files.test"],
            "deniedDomains": [],
            "allowedPorts": [80, 443],
            "internalHosts": {"files.test": "127.0.0.1"},
        }
        await create(app, network={"allowedDomains": []})  # about:blank, and nothing else
        network = configured_network(app)
        assert isinstance(network, dict) and network["allowedDomains"] == []
        acquired = len(app.sessions.acquired)
        for names, rule in (
            (["docs.example.com", "github.com"], "outside_ceiling"),
            (["*"], "too_broad"),
        ):
            refused = await app.client.post(B, json={"network": {"allowedDomains": names}})
            assert refused.status_code == 422
            detail = refused.json()["details"][0]
            assert detail["rule"] == rule and detail["field"].startswith("network.allowedDomains[")
        assert len(app.sessions.acquired) == acquired  # checked before an agent is taken
