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
from controller.errors import InvalidRequest, NotFound, Overloaded
from controller.keys import Caller
from controller.network import session_policy
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
    over = settings.over_ceiling(request.idleTimeoutS, request.maxLifetimeS)
    if over is not None:
        field, bound, env = over
        raise InvalidRequest(field, "less_than_equal", f"at most {bound} (setting {env})")
    return settings.session_timeouts(request.idleTimeoutS, request.maxLifetimeS)


def session_network(settings: Settings, request: CreateSessionRequest) -> SessionNetwork:
    """What the session's browser may reach, as its agent is told; a 422 when the request
    asks beyond the deployment's ceiling."""
    policy = session_policy(settings.network_ceiling, request.network)
    return SessionNetwork.of(policy, settings.network_internal_hosts)


def check_capacity(settings: Settings, open_sessions: int, caller: Caller, own: int) -> None:
    """429 when ``open_sessions`` fill the deployment's cap, or ``own`` (the caller's
    open sessions) its key's."""
    if open_sessions >= settings.max_browser_sessions:
        raise Overloaded(
            f"{settings.max_browser_sessions} browser sessions are open; close one or retry "
            "later (setting MAX_BROWSER_SESSIONS)",
            retry_after_s=5,
        )
    if own >= caller.max_browser_sessions:
        raise Overloaded(
            f"key {caller.name!r} has {caller.max_browser_sessions} browser sessions open; "
            "close one or retry later (maxBrowserSessions of its key)",
            retry_after_s=5,
        )


def not_found(session_id: str) -> NotFound:
    """The answer for a session that is not the caller's, whether or not it exists."""
    return NotFound(f"no browser session {session_id!r} (closed, expired or never opened)")
