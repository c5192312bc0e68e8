"""Admission control: a bounded number of running executions and a bounded queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from controller.errors import Overloaded


class Admission:
    """At most ``running`` executions at once and ``queued`` waiting; beyond that, 429."""

    def __init__(self, running: int, queued: int) -> None:
        self._slots = asyncio.Semaphore(running)
        self._capacity = running + queued
        self._admitted = 0
        self._running_limit = running
        self._queued_limit = queued

    @property
    def admitted(self) -> int:
        """Executions running or waiting."""
        return self._admitted

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
                yield
        finally:
            self._admitted -= 1
