"""Local browser sessions: each one an agent of this host, on the shared session rules.

The rules (ownership, caps, idle and lifetime expiry) are controller.sessions.registry's;
this binds a warm agent to each new session, forwards its calls, and kills the agent
when the session closes: deleted, expired, its browser dead, or the service stopping.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import httpx
from browser_agent.devices import known_device
from browser_agent.protocol import ConfigureResponse

from controller.browser.backend import AgentHandle, SessionBackend
from controller.browser.client import AgentClient, reply_model
from controller.browser.models import CreatedSession, CreateSessionRequest, SessionInfo, Viewport
from controller.browser.service import (
    BROWSER,
    browser_kind,
    checked_timeouts,
    session_network,
)
from controller.budget import MemoryBudget
from controller.errors import (
    AgentRefused,
    BadGateway,
    GatewayTimeout,
    InvalidRequest,
    NotFound,
)
from controller.keys import Caller
from controller.sessions.registry import Registry
from controller.sessions.registry import Session as OpenSession
from controller.settings import Settings

log = logging.getLogger(__name__)

new_session_id = BROWSER.new_id
is_session_id = BROWSER.is_id


@dataclass(kw_only=True)
class Session(OpenSession):
    """A browser session: its agent, and what the agent reported when it was bound."""

    agent: AgentHandle
    device: str
    viewport: Viewport | None
    user_agent: str
    is_mobile: bool

    def info(self) -> SessionInfo:
        return SessionInfo(
            sessionId=self.session_id,
            device=self.device,
            viewport=self.viewport,
            userAgent=self.user_agent,
            isMobile=self.is_mobile,
            labels=self.labels,
            createdAt=self.created_wall,
            lastUsedAt=self.last_used_at,
            expiresAt=self.expires_at,
            idleTimeoutS=self.idle_timeout_s,
            maxLifetimeS=self.max_lifetime_s,
        )


class SessionService:
    """Owns the sessions and their agents; the only way routes reach a browser."""

    def __init__(
        self,
        settings: Settings,
        backend: SessionBackend,
        client: AgentClient | None = None,
        budget: MemoryBudget | None = None,
    ) -> None:
        self.settings = settings
        self._backend = backend
        self._budget = budget
        self.client = client or AgentClient()
        self._registry: Registry[Session] = Registry(browser_kind(settings), self._release)
        self._background: set[asyncio.Task[None]] = set()

    @property
    def warm_agents(self) -> int:
        """Browsers started and waiting: creations that cost no launch."""
        return self._backend.warm_agents

    async def start(self) -> None:
        if self._budget is not None:  # the warm agents hold theirs all the time
            warm = self.settings.browser_warm_agents * self.settings.browser_memory_mb
            self._budget.hold(warm, "the warm browsers")
        await self._backend.start()
        self._registry.start()

    async def stop(self) -> None:
        await self._registry.stop()  # their agents go with the backend's, all at once
        await self._backend.stop()
        await self.client.close()

    async def create(self, request: CreateSessionRequest, caller: Caller) -> CreatedSession:
        s = self.settings
        idle, lifetime = checked_timeouts(s, request)
        network = session_network(s, request)
        names = self._backend.device_names
        if names and not known_device(request.device, names):
            raise InvalidRequest(
                "device",
                "unknown_device",
                f"unknown device {request.device!r}; accepted: " + ", ".join(names),
            )
        with self._registry.creating(caller):
            if self._budget is not None:
                self._budget.hold(s.browser_memory_mb, "a browser session")
            opened = False
            try:
                agent = await self._backend.acquire()
                try:
                    body = {"device": request.device, "network": network.model_dump()}
                    response = await self.client.request(agent, "POST", "/session", json=body)
                    bound = reply_model(response, ConfigureResponse)
                except AgentRefused:
                    self._backend.give_back(agent)  # untouched: a bad device name changes nothing
                    raise
                except BaseException:
                    # Whatever went wrong (the agent failed, answered nonsense, or the caller
                    # went away), an agent that got no session must not linger.
                    self._in_background(self._backend.release(agent))
                    raise
                opened = True
            finally:
                if not opened and self._budget is not None:
                    self._budget.release(s.browser_memory_mb)
        session = Session(
            session_id=BROWSER.new_id(),
            agent=agent,
            device=bound.device,
            viewport=Viewport(**bound.viewport.model_dump()) if bound.viewport else None,
            user_agent=bound.userAgent,
            is_mobile=bound.isMobile,
            labels=dict(request.labels),
            owner=caller.name,
            idle_timeout_s=idle,
            max_lifetime_s=lifetime,
        )
        self._registry.add(session)
        log.info("browser session %s opened (%s)", session.session_id, session.device)
        return CreatedSession(**session.info().model_dump(), tabId=bound.tabId)

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def get(self, session_id: str, caller: Caller) -> Session:
        return self._registry.get(session_id, caller)

    async def find(self, session_id: str, caller: Caller) -> Session:
        return self.get(session_id, caller)

    def list(self, caller: Caller | None = None) -> list[SessionInfo]:
        return [s.info() for s in self._registry.sessions(caller)]

    async def delete(self, session_id: str, caller: Caller) -> None:
        await self._registry.close(self.get(session_id, caller), "deleted")

    async def _release(self, session: Session, why: str) -> None:
        if self._budget is not None:
            self._budget.release(self.settings.browser_memory_mb)
        await self._backend.release(session.agent)

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
        """One call to the session's agent; a dead agent closes its session (502)."""
        session = self.get(session_id, caller)
        async with self._registry.using(session):
            try:
                return await self.client.request(
                    session.agent, method, path, json=json, params=params, timeout_s=timeout_s
                )
            except (BadGateway, GatewayTimeout):
                if session.closed:
                    raise NotFound(f"browser session {session_id!r} was closed") from None
                if not self._backend.alive(session.agent):
                    await self._registry.close(session, "agent died")
                    raise BadGateway(
                        f"the browser of session {session_id!r} died; the session is closed"
                    ) from None
                raise
