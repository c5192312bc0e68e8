"""Admission control: a bounded number of running executions, their memory, a bounded queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from controller.budget import MemoryBudget
from controller.errors import Overloaded


class Admission:
    """At most ``running`` executions at once and ``queued`` waiting; beyond that, 429.

    With a ``budget``, a running execution also holds ``memory_mb`` of it, waiting for
    it in turn once it has a slot (controller.budget).
    """

    def __init__(
        self,
        running: int,
        queued: int,
        budget: MemoryBudget | None = None,
        memory_mb: int = 0,
    ) -> None:
        self.budget = budget
        self._memory_mb = memory_mb
        self._slots = asyncio.Semaphore(running)
        self._capacity = running + queued
        self._admitted = 0
        self._running = 0
        self._running_limit = running
        self._queued_limit = queued

    @property
    def admitted(self) -> int:
        """Executions running or waiting."""
        return self._admitted

    @property
    def running(self) -> int:
        """Executions that hold a slot (and their memory)."""
        return self._running

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._admitted >= self._capacity:
            raise Overloaded(
                f"{self._running_limit} executions running and {self._queued_limit} queued; "
                "retry later (settings MAX_CONCURRENT_EXECUTIONS, MAX_QUEUED_EXECUTIONS)",
                retry_after_s=1,
            )
        self._admitted += 1
        try:
            async with self._slots:
                if self.budget is None:
                    async with self._counted():
                        yield
                else:
                    async with (
                        self.budget.reserved(self._memory_mb, "an execution"),
                        self._counted(),
                    ):
                        yield
        finally:
            self._admitted -= 1

    @asynccontextmanager
    async def _counted(self) -> AsyncIterator[None]:
        self._running += 1
        try:
            yield
        finally:
            self._running -= 1
