"""The session registry: create, find, use and close sessions; idle and lifetime expiry.

Every session has an owner (this registry) and a deadline: it is closed, and its agent
killed, when it has been idle for ``idleTimeoutS`` or has lived for ``maxLifetimeS``,
when it is deleted, or when the service stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from browser_agent.devices import known_device
from browser_agent.protocol import ConfigureResponse

from controller.browser.backend import AgentHandle, SessionBackend
from controller.browser.client import AgentClient, reply_model
from controller.browser.models import CreatedSession, CreateSessionRequest, SessionInfo, Viewport
from controller.browser.service import (
    check_capacity,
    checked_timeouts,
    not_found,
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
from controller.settings import Settings

log = logging.getLogger(__name__)

REAPER_TICK_S = 1.0


SESSION_ID = re.compile(r"bs-[0-9a-f]{20}")


def new_session_id() -> str:
    """Generated, never derived from the caller's input."""
    return "bs-" + secrets.token_hex(10)


def is_session_id(value: str) -> bool:
    """Whether ``value`` could be a session id at all (anything else is a 404 unasked)."""
    return SESSION_ID.fullmatch(value) is not None


@dataclass
class Session:
    session_id: str
    agent: AgentHandle
    device: str
    viewport: Viewport | None
    user_agent: str
    is_mobile: bool
    labels: dict[str, str]
    owner: str
    """The name of the caller's key that opened it."""
    idle_timeout_s: int
    max_lifetime_s: int
    created_wall: datetime
    created: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)
    in_flight: int = 0
    closed: bool = False

    def deadline(self) -> float:
        """When the session ends: idle deadline (not while a call runs) or end of lifetime."""
        end = self.created + self.max_lifetime_s
        if self.in_flight:
            return end
        return min(end, self.last_used + self.idle_timeout_s)

    def _wall(self, monotonic: float) -> datetime:
        return self.created_wall + timedelta(seconds=monotonic - self.created)

    def info(self) -> SessionInfo:
        return SessionInfo(
            sessionId=self.session_id,
            device=self.device,
            viewport=self.viewport,
            userAgent=self.user_agent,
            isMobile=self.is_mobile,
            labels=self.labels,
            createdAt=self.created_wall,
            lastUsedAt=self._wall(self.last_used),
            expiresAt=self._wall(self.deadline()),
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
        self._sessions: dict[str, Session] = {}
        self._creating = 0
        self._creating_by: Counter[str] = Counter()
        self._wake = asyncio.Event()
        self._reaper: asyncio.Task[None] | None = None
        self._stopping = False
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
        self._reaper = asyncio.create_task(self._reap(), name="browser-session-reaper")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        sessions = list(self._sessions.values())
        self._sessions.clear()
        for session in sessions:
            session.closed = True
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
        own = sum(1 for x in self._sessions.values() if x.owner == caller.name)
        own += self._creating_by[caller.name]
        check_capacity(s, len(self._sessions) + self._creating, caller, own)
        if self._budget is not None:
            self._budget.hold(s.browser_memory_mb, "a browser session")
        self._creating += 1
        self._creating_by[caller.name] += 1
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
            self._creating -= 1
            self._creating_by[caller.name] -= 1
            if not opened and self._budget is not None:
                self._budget.release(s.browser_memory_mb)
        session = Session(
            session_id=new_session_id(),
            agent=agent,
            device=bound.device,
            viewport=Viewport(**bound.viewport.model_dump()) if bound.viewport else None,
            user_agent=bound.userAgent,
            is_mobile=bound.isMobile,
            labels=dict(request.labels),
            owner=caller.name,
            idle_timeout_s=idle,
            max_lifetime_s=lifetime,
            created_wall=datetime.now(UTC),
        )
        self._sessions[session.session_id] = session
        self._wake.set()
        log.info("browser session %s opened (%s)", session.session_id, session.device)
        return CreatedSession(**session.info().model_dump(), tabId=bound.tabId)

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def get(self, session_id: str, caller: Caller) -> Session:
        session = self._sessions.get(session_id)
        if session is None or session.closed or session.owner != caller.name:
            raise not_found(session_id)
        return session

    async def find(self, session_id: str, caller: Caller) -> Session:
        return self.get(session_id, caller)

    def list(self, caller: Caller | None = None) -> list[SessionInfo]:
        return [
            s.info()
            for s in self._sessions.values()
            if not s.closed and (caller is None or s.owner == caller.name)
        ]

    async def delete(self, session_id: str, caller: Caller) -> None:
        await self._close(self.get(session_id, caller), "deleted")

    async def _close(self, session: Session, why: str) -> None:
        if session.closed:
            return
        session.closed = True
        self._sessions.pop(session.session_id, None)
        log.info("browser session %s closed (%s)", session.session_id, why)
        if self._budget is not None:
            self._budget.release(self.settings.browser_memory_mb)
        await self._backend.release(session.agent)

    @contextlib.asynccontextmanager
    async def _using(self, session: Session) -> AsyncIterator[None]:
        session.in_flight += 1
        try:
            yield
        finally:
            session.in_flight -= 1
            session.last_used = time.monotonic()

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
        async with self._using(session):
            try:
                return await self.client.request(
                    session.agent, method, path, json=json, params=params, timeout_s=timeout_s
                )
            except (BadGateway, GatewayTimeout):
                if session.closed:
                    raise NotFound(f"browser session {session_id!r} was closed") from None
                if not self._backend.alive(session.agent):
                    await self._close(session, "agent died")
                    raise BadGateway(
                        f"the browser of session {session_id!r} died; the session is closed"
                    ) from None
                raise

    async def _reap(self) -> None:
        while not self._stopping:
            now = time.monotonic()
            expired = [s for s in self._sessions.values() if now >= s.deadline()]
            results = await asyncio.gather(
                *(self._close(s, "expired") for s in expired), return_exceptions=True
            )
            for session, result in zip(expired, results, strict=True):
                if isinstance(result, Exception):
                    log.error("closing expired session %s: %s", session.session_id, result)
            upcoming = [s.deadline() for s in self._sessions.values()]
            pause = min([REAPER_TICK_S, *(d - time.monotonic() for d in upcoming)])
            self._wake.clear()
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow the
            # cancellation that stop() sends when the wake-up lands at the same moment.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(pause, 0.01)):
                    await self._wake.wait()
