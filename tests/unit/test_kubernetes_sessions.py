"""What the controller reads from a BrowserSession: the public record and creation refusals."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import pytest

from controller.browser.client import AgentClient
from controller.browser.sessions import new_session_id
from controller.errors import AgentRefused, BrowserUnavailable, NotFound
from controller.keys import Defaults
from controller.kubernetes.api import KubeApi
from controller.kubernetes.manifests import LABEL_KEY
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
    info = session_info(BODY)
    assert info.sessionId == "bs-1"
    assert (info.device, info.isMobile, info.labels) == ("mobile", True, {"who": "a"})
    assert info.viewport is not None and info.viewport.width == 412
    assert info.lastUsedAt == datetime(2026, 12, 2, 12, 5, tzinfo=UTC)
    # Idle deadline (12:06) before the end of the lifetime (12:10).
    assert info.expiresAt == datetime(2026, 12, 2, 12, 6, tzinfo=UTC)


def test_the_lifetime_bounds_the_deadline() -> None:
    body = {**BODY, "status": {**BODY["status"], "lastUsedAt": "2026-12-02T12:09:30Z"}}
    assert session_info(body).expiresAt == datetime(2026, 12, 2, 12, 10, tzinfo=UTC)


def test_a_browsers_refusal_reaches_the_creator_as_it_came() -> None:
    error = {
        "status": 422,
        "code": "invalid_request",
        "message": "unknown device 'Nokia'",
        "details": [{"field": "device", "rule": "unknown_device", "message": "unknown"}],
    }
    failed = {**BODY, "status": {"phase": "Failed", "reason": "refused", "error": error}}
    refused = refusal(failed)
    assert isinstance(refused, AgentRefused)
    assert refused.status_code == 422
    assert refused.body()["details"][0]["rule"] == "unknown_device"


def test_a_platform_failure_is_a_503_with_the_reason() -> None:
    failed = {**BODY, "status": {"phase": "Failed", "reason": "the browser pod cannot start"}}
    refused = refusal(failed)
    assert isinstance(refused, BrowserUnavailable)
    assert "cannot start" in refused.message


DEFAULTS = Defaults(4, 32, 4)
CALLER = DEFAULTS.caller()


class RecordingApi:
    """Stands in for the API server's edge: records what reaches it, finds ``found``."""

    def __init__(self, found: dict[str, Any] | None = None) -> None:
        self.asked: list[str] = []
        self.deleted: list[str] = []
        self.found = found

    async def read_custom(self, resource: Any, name: str) -> dict[str, Any]:
        from controller.kubernetes.api import Absent

        self.asked.append(name)
        if self.found is None or self.found["metadata"]["name"] != name:
            raise Absent(f"no {name}")
        return self.found

    async def delete_custom(self, resource: Any, name: str) -> bool:
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
