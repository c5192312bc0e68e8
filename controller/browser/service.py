"""What the /browser routes need of sessions, in both placements, and the rules both apply.

Local mode keeps sessions in this process (controller.browser.sessions); Kubernetes mode
keeps them in BrowserSession resources (controller.kubernetes.sessions), so that any
controller replica serves any session.
"""

from __future__ import annotations

from typing import Any, Protocol

import httpx
from browser_agent.protocol import SessionNetwork

from controller.browser.models import CreatedSession, CreateSessionRequest, SessionInfo
from controller.keys import Caller
from controller.network import session_policy
from controller.sessions.registry import SessionKind, SessionNames
from controller.settings import Settings


class OpenSession(Protocol):
    def info(self) -> SessionInfo: ...


class BrowserSessions(Protocol):
    """Every session belongs to the caller (controller.keys) that opened it: another
    caller's session is not found (404), and each caller has its own cap."""

    settings: Settings

    @property
    def warm_agents(self) -> int:
        """Browsers started and waiting: creations that cost no launch."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def create(self, request: CreateSessionRequest, caller: Caller) -> CreatedSession: ...

    async def find(self, session_id: str, caller: Caller) -> OpenSession:
        """The open session; NotFound (404) when there is none, Gone (410) when it failed."""

    def list(self, caller: Caller | None = None) -> list[SessionInfo]:
        """``caller``'s open sessions; None: everybody's (metrics)."""

    async def delete(self, session_id: str, caller: Caller) -> None: ...

    async def call(
        self,
        session_id: str,
        caller: Caller,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        timeout_s: float = 30.0,
    ) -> httpx.Response:
        """One call to the session's agent, with its token; it counts as use."""


def checked_timeouts(settings: Settings, request: CreateSessionRequest) -> tuple[int, int]:
    """(idle timeout, lifetime) of a new session; a 422 when it asks above a ceiling."""
    return settings.browser_timeouts.checked(request.idleTimeoutS, request.maxLifetimeS)


def session_network(settings: Settings, request: CreateSessionRequest) -> SessionNetwork:
    """What the session's browser may reach, as its agent is told; a 422 when the request
    asks beyond the deployment's ceiling."""
    policy = session_policy(settings.network_ceiling, request.network)
    return SessionNetwork.of(policy, settings.network_internal_hosts)


BROWSER = SessionNames("browser session", "bs")


def browser_kind(settings: Settings) -> SessionKind:
    """Browser sessions' names, ids and caps, for the rules every kind shares."""
    return SessionKind(
        names=BROWSER,
        deployment_cap=settings.max_browser_sessions,
        deployment_setting="MAX_BROWSER_SESSIONS",
        key_cap=lambda caller: caller.max_browser_sessions,
        key_field="maxBrowserSessions",
    )


def check_capacity(settings: Settings, open_sessions: int, caller: Caller, own: int) -> None:
    """429 when ``open_sessions`` fill the deployment's cap, or ``own`` (the caller's
    open sessions) its key's."""
    browser_kind(settings).check_capacity(open_sessions, caller, own)


not_found = BROWSER.not_found
