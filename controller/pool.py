"""A warm pool: things started ahead of demand, each handed out once (sandboxes, agents, pods).

Starting a sandbox or a browser costs far more than using one, so a pool keeps ``size``
of them started and ready; a request takes one, and the owner refills the pool when it
chooses (after the run, so a refill never competes with the run it serves).  Every
member has an owner, this pool, and a deadline: a ready member older than ``max_age_s``
is replaced, and ``stop`` closes every member, handed out or not, that has not been
retired.  A start that fails backs off, longer after each failure in a row, so a broken
host does not spend its CPU on starts; a taker then pays for a start of its own and
gets its error, rather than waiting on a pool that cannot fill.

Members are handed out fairly between takers (callers' keys) when they are scarce.  A
caller who takes as fast as the pool refills would otherwise leave it empty, and every
other caller waiting behind its takes: so a member that arrives goes to the waiting
taker who has taken the fewest lately (a count that halves every TAKE_HALF_LIFE_S), and
the last ready member is kept for a lighter taker who was active lately, so that it
finds one at once.  A taker alone, or the lightest, takes as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T", bound=Hashable)


@dataclass(frozen=True)
class Backoff:
    first_s: float
    max_s: float

    def pause(self, failures: int) -> float:
        return float(min(self.first_s * 2 ** max(failures - 1, 0), self.max_s))


class PoolClosed(Exception):
    """The pool is stopping: nothing more is handed out."""


TAKE_HALF_LIFE_S = 1.0
"""How fast a taker's count of recent takes fades."""
ACTIVE_TAKES = 0.05
"""A taker whose count is below this (no take for about four seconds) is not counted."""


class Takes:
    """Each taker's recent takes, a count that halves every TAKE_HALF_LIFE_S."""

    def __init__(self) -> None:
        self._counts: dict[str, tuple[float, float]] = {}  # taker -> (count, at)

    def count(self, taker: str, now: float) -> float:
        count, at = self._counts.get(taker, (0.0, now))
        return count * math.exp2(-(now - at) / TAKE_HALF_LIFE_S)

    def add(self, taker: str, now: float) -> None:
        self._counts[taker] = (self.count(taker, now) + 1, now)
        for other in [t for t in self._counts if self.count(t, now) < ACTIVE_TAKES]:
            del self._counts[other]  # bounded by the takers active lately

    def lightest(self, taker: str, now: float) -> bool:
        """Whether no other taker active lately has taken fewer than ``taker``."""
        mine = self.count(taker, now)
        return all(
            self.count(other, now) >= mine or self.count(other, now) < ACTIVE_TAKES
            for other in self._counts
            if other != taker
        )


@dataclass
class _Waiter:
    arrived: asyncio.Future[None]
    taker: str | None


class WarmPool(Generic[T]):
    def __init__(
        self,
        what: str,
        size: int,
        *,
        start: Callable[[], Awaitable[T]],
        close: Callable[[T], Awaitable[None]],
        alive: Callable[[T], bool],
        backoff: Backoff,
        max_age_s: float | None = None,
    ) -> None:
        """``start`` makes one ready member (and cleans up after itself if cancelled)."""
        self.what, self.size = what, size
        self._start, self._close, self._alive = start, close, alive
        self._backoff, self._max_age_s = backoff, max_age_s
        self._ready: deque[tuple[T, float]] = deque()
        self._members: set[T] = set()
        self._starting = 0
        self._failures = 0
        self._waiters: deque[_Waiter] = deque()
        self._takes = Takes()
        self._tasks: set[asyncio.Task[None]] = set()
        """Starts and the renewal: cancelled by stop."""
        self._closing: set[asyncio.Task[None]] = set()
        """Closes in progress: awaited by stop, never cancelled (a half-closed member leaks)."""
        self._stopping = False

    @property
    def ready(self) -> int:
        """Members started, alive and waiting to be taken."""
        return sum(1 for member, _ in self._ready if self._alive(member))

    @property
    def members(self) -> int:
        """Everything started and not yet retired, handed out or not."""
        return len(self._members)

    def open(self) -> None:
        """Start filling, and replacing members past their age."""
        self.fill()
        if self._max_age_s is not None:
            self._track(self._renew(self._max_age_s))

    def fill(self) -> None:
        """Start as many members as the pool lacks; each joins it when ready."""
        if self._stopping:
            return
        for _ in range(self.size - len(self._ready) - self._starting):
            self._starting += 1
            self._track(self._warm_one())

    async def take(self, timeout_s: float, taker: str | None = None) -> T:
        """A ready member; else the next one to become ready; else one started now.

        ``taker`` (a caller's key): members are shared fairly between takers (above).
        Raises TimeoutError when none became ready in time, PoolClosed when stopping,
        and whatever ``start`` raised when this taker started one itself.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            if self._stopping:
                raise PoolClosed(f"no {self.what}: the service is shutting down")
            while self._ready and self._may_take(taker):
                member, started = self._ready.popleft()
                if self._alive(member) and not self._expired(started):
                    if taker is not None:
                        self._takes.add(taker, time.monotonic())
                    return member
                self.retire(member)
            if self._starting == 0:
                # Nothing on its way (or the last member kept for a lighter taker): this
                # taker pays for a start of its own.
                return await self._cold_start()
            waiter = _Waiter(loop.create_future(), taker)
            self._waiters.append(waiter)
            try:
                # asyncio.timeout_at, not wait_for: 3.11's wait_for can swallow a
                # cancellation that lands as the member arrives.
                async with asyncio.timeout_at(deadline):
                    await waiter.arrived
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)

    def _may_take(self, taker: str | None) -> bool:
        """The last ready member is kept for a lighter taker active lately."""
        if taker is None or len(self._ready) > 1:
            return True
        return self._takes.lightest(taker, time.monotonic())

    def give_back(self, member: T) -> None:
        """Return a member taken but never used; beyond the pool's size it is retired."""
        if not self._stopping and self._alive(member) and len(self._ready) < self.size:
            self._ready.appendleft((member, time.monotonic()))
            self._wake_one()
        else:
            self.retire(member)

    def retire(self, member: T) -> None:
        """Close a member in the background: whoever used it need not wait for that."""
        self._track(self.discard(member), self._closing)

    async def discard(self, member: T) -> None:
        """Close a member now; it leaves the pool's care once closed."""
        try:
            await self._close(member)
        finally:
            self._members.discard(member)

    async def stop(self) -> None:
        """Stop starting, and close every member not yet retired."""
        self._stopping = True
        for waiter in self._waiters:
            if not waiter.arrived.done():
                waiter.arrived.set_result(None)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=10)
        self._ready.clear()
        members = list(self._members)
        await asyncio.gather(*(self.discard(m) for m in members), return_exceptions=True)
        if self._closing:
            await asyncio.wait(set(self._closing), timeout=10)

    def _expired(self, started: float) -> bool:
        return self._max_age_s is not None and time.monotonic() - started > self._max_age_s

    def _track(self, work: Awaitable[None], tasks: set[asyncio.Task[None]] | None = None) -> None:
        into = self._tasks if tasks is None else tasks
        task = asyncio.ensure_future(work)
        into.add(task)
        task.add_done_callback(into.discard)

    def _wake_one(self) -> None:
        """A member is ready: for the waiting taker who has taken the fewest lately (the
        first of them to come, among equals)."""
        now = time.monotonic()
        waiting = [w for w in self._waiters if not w.arrived.done()]
        if waiting:
            chosen = min(waiting, key=lambda w: self._takes.count(w.taker, now) if w.taker else 0.0)
            self._waiters.remove(chosen)
            chosen.arrived.set_result(None)

    async def _cold_start(self) -> T:
        member = await self._start()
        self._members.add(member)
        return member

    async def _warm_one(self) -> None:
        started = time.monotonic()
        try:
            member = await self._start()
        except asyncio.CancelledError:
            self._starting -= 1
            raise
        except Exception as exc:
            self._starting -= 1
            self._failures += 1
            pause = self._backoff.pause(self._failures)
            log.warning("warm %s failed to start (retry in %.0fs): %s", self.what, pause, exc)
            self._wake_one()  # a waiter now starts one of its own and learns why
            await asyncio.sleep(pause)
            self.fill()
            return
        self._starting -= 1
        self._failures = 0
        self._members.add(member)
        if self._stopping:
            await self.discard(member)
            return
        self._ready.append((member, started))
        self._wake_one()

    async def _renew(self, max_age_s: float) -> None:
        """Every ready member has a deadline: those past it are replaced."""
        while True:
            await asyncio.sleep(max_age_s / 4)
            for _ in range(len(self._ready)):
                member, started = self._ready.popleft()
                if self._alive(member) and not self._expired(started):
                    self._ready.append((member, started))
                else:
                    self.retire(member)
            self.fill()
