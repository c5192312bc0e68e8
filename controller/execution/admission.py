"""Admission control: bounded running and queued executions, per caller and in all, fairly.

Each caller (controller.keys) may run ``max_concurrent_executions`` and queue
``max_queued_executions`` of its own; all of them together at most the deployment's
MAX_CONCURRENT_EXECUTIONS and MAX_QUEUED_EXECUTIONS.  Beyond either, 429.  A freed slot
goes to the callers with executions waiting in turn (controller.fairness), so a caller
who queues a hundred executions delays another's next one by at most one execution per
caller, not by a hundred.  With a memory ``budget``, a running execution also holds
``memory_mb`` of it, waiting for it in turn once it has a slot (controller.budget).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from controller.budget import MemoryBudget
from controller.errors import Overloaded
from controller.fairness import FairSlots
from controller.keys import Caller


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
        self._slots = FairSlots(running)
        self._queued_limit = queued
        self._admitted = 0
        self._admitted_by: Counter[str] = Counter()

    @property
    def admitted(self) -> int:
        """Executions running or waiting."""
        return self._admitted

    @property
    def running(self) -> int:
        """Executions that hold a slot."""
        return self._slots.running

    @asynccontextmanager
    async def slot(self, caller: Caller) -> AsyncIterator[None]:
        name = caller.name
        running_limit = self._slots.limit
        if self._admitted >= running_limit + self._queued_limit:
            raise Overloaded(
                f"{running_limit} executions running and {self._queued_limit} queued; "
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
            async with self._slots.held(name, caller.max_concurrent_executions):
                if self.budget is None:
                    yield
                else:
                    async with self.budget.reserved(self._memory_mb, "an execution"):
                        yield
        finally:
            self._admitted -= 1
            self._admitted_by[name] -= 1
            if not self._admitted_by[name]:
                del self._admitted_by[name]
