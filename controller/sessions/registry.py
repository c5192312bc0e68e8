"""Live sessions of one kind, in this process: ownership, caps, use, expiry and closing.

Every kind of session (a browser session, a code context) has the same rules, written
here once: a generated id; an owner, the key that opened it (any other key is told it
does not exist); a cap on open sessions for the deployment and one for each key,
creations in flight included; an idle deadline (not while a call runs) and a lifetime;
and a reaper that closes what has expired.  What a session holds (an agent, a sandbox)
is in the kind's subclass of ``Session``; releasing it is the kind's ``close`` callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

from controller.errors import NotFound, Overloaded
from controller.keys import Caller

log = logging.getLogger(__name__)

REAPER_TICK_S = 1.0


@dataclass(frozen=True)
class SessionNames:
    """How a kind is named: in messages, and in the ids it generates."""

    noun: str
    """How messages name one: "browser session", "code context"."""
    prefix: str
    """Of generated ids: "bs", "ctx"."""

    def new_id(self) -> str:
        """Generated, never derived from the caller's input."""
        return f"{self.prefix}-{secrets.token_hex(10)}"

    def is_id(self, value: str) -> bool:
        """Whether ``value`` could be an id of this kind at all (anything else: 404 unasked)."""
        return re.fullmatch(re.escape(self.prefix) + r"-[0-9a-f]{20}", value) is not None

    def not_found(self, session_id: str) -> NotFound:
        """The answer for a session that is not the caller's, whether or not it exists."""
        return NotFound(f"no {self.noun} {session_id!r} (closed, expired or never opened)")


@dataclass(frozen=True)
class SessionKind:
    """What differs between kinds: names, and caps (with the settings that set them)."""

    names: SessionNames
    deployment_cap: int
    deployment_setting: str
    key_cap: Callable[[Caller], int]
    key_field: str
    """The keys file's field of the per-key cap (``maxBrowserSessions``)."""

    def check_capacity(self, open_sessions: int, caller: Caller, own: int) -> None:
        """429 when ``open_sessions`` fill the deployment's cap, or ``own`` the key's."""
        if open_sessions >= self.deployment_cap:
            raise Overloaded(
                f"{self.deployment_cap} {self.names.noun}s are open; close one or retry later "
                f"(setting {self.deployment_setting})",
                retry_after_s=5,
            )
        mine = self.key_cap(caller)
        if own >= mine:
            raise Overloaded(
                f"key {caller.name!r} has {mine} {self.names.noun}s open; close one or retry later "
                f"({self.key_field} of its key)",
                retry_after_s=5,
            )


@dataclass(kw_only=True)
class Session:
    """One open session, as the rules see it; each kind adds what it holds."""

    session_id: str
    owner: str
    """The name of the caller's key that opened it."""
    labels: dict[str, str]
    idle_timeout_s: int
    max_lifetime_s: int
    created_wall: datetime = field(default_factory=lambda: datetime.now(UTC))
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

    def wall(self, monotonic: float) -> datetime:
        return self.created_wall + timedelta(seconds=monotonic - self.created)

    @property
    def last_used_at(self) -> datetime:
        return self.wall(self.last_used)

    @property
    def expires_at(self) -> datetime:
        return self.wall(self.deadline())


S = TypeVar("S", bound=Session)


class Registry(Generic[S]):
    """The open sessions of one kind; closes each at its deadline."""

    def __init__(self, kind: SessionKind, close: Callable[[S, str], Awaitable[None]]) -> None:
        """``close(session, why)`` releases what the session holds (called once each)."""
        self.kind = kind
        self._close_handle = close
        self._sessions: dict[str, S] = {}
        self._creating = 0
        self._creating_by: Counter[str] = Counter()
        self._wake = asyncio.Event()
        self._reaper: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._reaper = asyncio.create_task(self._reap(), name=f"{self.kind.names.prefix}-reaper")

    async def stop(self) -> list[S]:
        """Stop reaping; every session is closed here (the caller releases the handles,
        all at once): they are returned."""
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
        return sessions

    @contextlib.contextmanager
    def creating(self, caller: Caller) -> Iterator[None]:
        """A creation for ``caller``, counted against the caps while it is under way;
        429 (Overloaded) when a cap is full."""
        own = sum(1 for s in self._sessions.values() if s.owner == caller.name)
        own += self._creating_by[caller.name]
        self.kind.check_capacity(len(self._sessions) + self._creating, caller, own)
        self._creating += 1
        self._creating_by[caller.name] += 1
        try:
            yield
        finally:
            self._creating -= 1
            self._creating_by[caller.name] -= 1

    def add(self, session: S) -> None:
        self._sessions[session.session_id] = session
        self._wake.set()

    def get(self, session_id: str, caller: Caller) -> S:
        """The caller's open session; NotFound for any other."""
        session = self._sessions.get(session_id)
        if session is None or session.closed or session.owner != caller.name:
            raise self.kind.names.not_found(session_id)
        return session

    def sessions(self, caller: Caller | None = None) -> list[S]:
        """``caller``'s open sessions; None: everybody's (metrics)."""
        return [
            s
            for s in self._sessions.values()
            if not s.closed and (caller is None or s.owner == caller.name)
        ]

    async def close(self, session: S, why: str) -> None:
        if session.closed:
            return
        session.closed = True
        self._sessions.pop(session.session_id, None)
        log.info("%s %s closed (%s)", self.kind.names.noun, session.session_id, why)
        await self._close_handle(session, why)

    @contextlib.asynccontextmanager
    async def using(self, session: S) -> AsyncIterator[None]:
        """One call on the session: it does not idle out meanwhile, and counts as use."""
        session.in_flight += 1
        try:
            yield
        finally:
            session.in_flight -= 1
            session.last_used = time.monotonic()
            self._wake.set()  # its idle deadline moved

    async def _reap(self) -> None:
        while not self._stopping:
            now = time.monotonic()
            expired = [s for s in self._sessions.values() if now >= s.deadline()]
            results = await asyncio.gather(
                *(self.close(s, "expired") for s in expired), return_exceptions=True
            )
            for session, result in zip(expired, results, strict=True):
                if isinstance(result, Exception):
                    log.error(
                        "closing expired %s %s: %s",
                        self.kind.names.noun,
                        session.session_id,
                        result,
                    )
            upcoming = [s.deadline() for s in self._sessions.values()]
            pause = min([REAPER_TICK_S, *(d - time.monotonic() for d in upcoming)])
            self._wake.clear()
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow the
            # cancellation that stop() sends when the wake-up lands at the same moment.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(pause, 0.01)):
                    await self._wake.wait()
