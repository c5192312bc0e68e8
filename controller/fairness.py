"""Slots shared fairly between callers: round robin over the callers that wait.

``limit`` slots in all, each caller at most its own cap of them at once.  A freed slot
goes to the callers with requests waiting in turn, each caller's own in order of arrival,
so a caller who waits with a hundred requests delays another's next one by at most one
request per caller, not by a hundred.  Admission of executions (controller.execution.
admission) and the request-body parsers (controller.bodies.pool) share out their slots so.
"""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass


@dataclass
class _Waiter:
    granted: asyncio.Future[None]
    cap: int
    """Its caller's own cap."""


class FairSlots:
    """``limit`` slots; ``held(name, cap)`` waits for one in turn and frees it after."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._running = 0
        self._running_by: Counter[str] = Counter()
        self._waiting: OrderedDict[str, deque[_Waiter]] = OrderedDict()
        """Callers with requests waiting, the next to be served first."""

    @property
    def running(self) -> int:
        """Slots held."""
        return self._running

    @asynccontextmanager
    async def held(self, name: str, cap: int) -> AsyncIterator[None]:
        """A slot for ``name`` (who may hold at most ``cap``), for the block's duration."""
        await self.acquire(name, cap)
        try:
            yield
        finally:
            self.release(name)

    async def acquire(self, name: str, cap: int) -> None:
        """A slot for ``name``, in turn; ``release`` gives it back (``held`` pairs them)."""
        await self._acquire(name, cap)

    def release(self, name: str) -> None:
        self._release(name)

    async def _acquire(self, name: str, cap: int) -> None:
        if name not in self._waiting and self._may_run(name, cap):
            self._take(name)
            return
        waiter = _Waiter(asyncio.get_running_loop().create_future(), cap)
        self._waiting.setdefault(name, deque()).append(waiter)
        try:
            await waiter.granted
        except asyncio.CancelledError:
            if waiter.granted.done() and not waiter.granted.cancelled():
                self._release(name)  # granted just as the caller went away
            else:
                self._forget(name, waiter)
            raise

    def _may_run(self, name: str, cap: int) -> bool:
        return self._running < self.limit and self._running_by[name] < cap

    def _take(self, name: str) -> None:
        self._running += 1
        self._running_by[name] += 1

    def _release(self, name: str) -> None:
        self._running -= 1
        self._running_by[name] -= 1
        if not self._running_by[name]:
            del self._running_by[name]
        self._dispatch()

    def _dispatch(self) -> None:
        """Free slots to waiting callers in turn: each served caller goes to the back."""
        while self._running < self.limit:
            name = next(
                (n for n, q in self._waiting.items() if self._running_by[n] < q[0].cap), None
            )
            if name is None:
                return
            queue = self._waiting[name]
            waiter = queue.popleft()
            if queue:
                self._waiting.move_to_end(name)
            else:
                del self._waiting[name]
            if waiter.granted.done():
                # Cancelled, its task not yet run to take itself out: nobody to give it to.
                continue
            self._take(name)
            waiter.granted.set_result(None)

    def _forget(self, name: str, waiter: _Waiter) -> None:
        queue = self._waiting.get(name)
        if queue is not None and waiter in queue:
            queue.remove(waiter)
            if not queue:
                del self._waiting[name]
