"""Admission control: bounded running and queued executions, per caller and in all, fairly.

Each caller (controller.keys) may run ``max_concurrent_executions`` and queue
``max_queued_executions`` of its own; all of them together at most the deployment's
MAX_CONCURRENT_EXECUTIONS and MAX_QUEUED_EXECUTIONS.  Beyond either, 429.  A freed slot
goes to the callers with executions waiting in turn (round robin, each caller's own in
order of arrival), so a caller who queues a hundred executions delays another's next
one by at most one execution per caller, not by a hundred.  With a memory ``budget``, a
running execution also holds ``memory_mb`` of it, waiting for it in turn once it has a
slot (controller.budget).
"""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from controller.budget import MemoryBudget
from controller.errors import Overloaded
from controller.keys import Caller


@dataclass
class _Waiter:
    granted: asyncio.Future[None]
    cap: int
    """Its caller's max_concurrent_executions."""


class Admission:
    """The deployment's slots, shared fairly between callers."""

    def __init__(
        self,
        running: int,
        queued: int,
        budget: MemoryBudget | None = None,
        memory_mb: int = 0,
    ) -> None:
        self.budget = budget
        self._memory_mb = memory_mb
        self._running_limit = running
        self._queued_limit = queued
        self._admitted = 0
        self._running = 0
        self._admitted_by: Counter[str] = Counter()
        self._running_by: Counter[str] = Counter()
        self._waiting: OrderedDict[str, deque[_Waiter]] = OrderedDict()
        """Callers with executions waiting, the next to be served first."""

    @property
    def admitted(self) -> int:
        """Executions running or waiting."""
        return self._admitted

    @property
    def running(self) -> int:
        """Executions that hold a slot."""
        return self._running

    @asynccontextmanager
    async def slot(self, caller: Caller) -> AsyncIterator[None]:
        name = caller.name
        if self._admitted >= self._running_limit + self._queued_limit:
            raise Overloaded(
                f"{self._running_limit} executions running and {self._queued_limit} queued; "
                "retry later (settings MAX_CONCURRENT_EXECUTIONS, MAX_QUEUED_EXECUTIONS)",
                retry_after_s=1,
            )
        own = caller.max_concurrent_executions + caller.max_queued_executions
        if self._admitted_by[name] >= own:
            raise Overloaded(
                f"key {name!r} has {caller.max_concurrent_executions} executions running and "
                f"{caller.max_queued_executions} queued; retry later "
                "(maxConcurrentExecutions, maxQueuedExecutions of its key)",
                retry_after_s=1,
            )
        self._admitted += 1
        self._admitted_by[name] += 1
        try:
            await self._acquire(name, caller.max_concurrent_executions)
            try:
                if self.budget is None:
                    yield
                else:
                    async with self.budget.reserved(self._memory_mb, "an execution"):
                        yield
            finally:
                self._release(name)
        finally:
            self._admitted -= 1
            self._admitted_by[name] -= 1
            if not self._admitted_by[name]:
                del self._admitted_by[name]

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
        return self._running < self._running_limit and self._running_by[name] < cap

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
        while self._running < self._running_limit:
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
