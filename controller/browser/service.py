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
from controller.errors import InvalidRequest, Overloaded
from controller.network import session_policy
from controller.settings import Settings


class OpenSession(Protocol):
    def info(self) -> SessionInfo: ...


class BrowserSessions(Protocol):
    settings: Settings

    @property
    def warm_agents(self) -> int:
        """Browsers started and waiting: creations that cost no launch."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def create(self, request: CreateSessionRequest) -> CreatedSession: ...

    async def find(self, session_id: str) -> OpenSession:
        """The open session; NotFound (404) when there is none, Gone (410) when it failed."""

    def list(self) -> list[SessionInfo]: ...

    async def delete(self, session_id: str) -> None: ...

    async def call(
        self,
        session_id: str,
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


def check_capacity(settings: Settings, open_sessions: int) -> None:
    if open_sessions >= settings.max_browser_sessions:
        raise Overloaded(
            f"{settings.max_browser_sessions} browser sessions are open; close one or retry "
            "later (setting MAX_BROWSER_SESSIONS)",
            retry_after_s=5,
        )
