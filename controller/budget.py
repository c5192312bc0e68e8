"""The host's memory budget (local placement): what executions and browsers hold together.

Every running execution holds its cap (MEMORY_LIMIT_MB, which its cgroup enforces),
every warm sandbox what the start-up self-test's sandbox measured (an idle interpreter:
taken, it becomes a running execution holding its cap), every browser agent, warm or in
a session, BROWSER_MEMORY_MB (its cgroup's limit).  Their sum never exceeds MEMORY_BUDGET_MB, so
however the caps are used at once, the host keeps memory for itself and the service
(the kernel's OOM killer then never chooses among the service and its neighbours).
Executions wait for memory in order of arrival, a bounded time; browsers are refused
at once, as at their session limit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from runner.cgroup import host_placement
from runner.contract import MIB

from controller.errors import Overloaded

BUDGET_SHARE = 0.75
"""The default budget: this share of the host's memory (or of the service's own cgroup
limit, when it has one), the rest left to the system and the service itself."""
MEMORY_WAIT_S = 30.0
"""How long an admitted execution waits for memory before its 429."""


def host_memory_mb(
    meminfo: Path = Path("/proc/meminfo"), cgroup_limits: tuple[Path, ...] = ()
) -> int:
    """MemTotal, or the smallest memory limit among ``cgroup_limits`` when below it."""
    total_kb = 0
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemTotal:"):
            total_kb = int(line.split()[1])
    limits = [total_kb * 1024]
    for path in cgroup_limits:
        with contextlib.suppress(OSError, ValueError):
            text = path.read_text().strip()
            if text != "max":
                limits.append(int(text))
    return min(limits) // MIB


def own_cgroup_limits() -> tuple[Path, ...]:
    """The memory limit file of this process's own cgroup (runner.cgroup finds it)."""
    where = host_placement()
    if isinstance(where, str):
        return ()
    if where.version == 2:
        return (where.parents[""] / "memory.max",)
    return (where.parents["memory"] / "memory.limit_in_bytes",)


def default_budget_mb() -> int:
    return int(host_memory_mb(cgroup_limits=own_cgroup_limits()) * BUDGET_SHARE)


class MemoryBudget:
    """MiB held against a total; waiters served in order of arrival."""

    def __init__(self, total_mb: int, wait_s: float = MEMORY_WAIT_S) -> None:
        self.total_mb = total_mb
        self.held_mb = 0
        self._wait_s = wait_s
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def free_mb(self) -> int:
        return self.total_mb - self.held_mb

    def _refusal(self, mb: int, what: str) -> Overloaded:
        return Overloaded(
            f"{what} needs {mb} MiB of memory and {self.free_mb} of the {self.total_mb} "
            "MiB budget are free (held by running executions, warm sandboxes and "
            "browsers); retry later (setting MEMORY_BUDGET_MB)",
            retry_after_s=1,
        )

    def hold(self, mb: int, what: str) -> None:
        """Take ``mb`` now or raise Overloaded (nobody waiting goes before a newcomer)."""
        if self._waiters or mb > self.free_mb:
            raise self._refusal(mb, what)
        self.held_mb += mb

    def release(self, mb: int) -> None:
        self.held_mb -= mb
        while self._waiters and self._waiters[0][0] <= self.free_mb:
            need, future = self._waiters.popleft()
            if not future.done():
                self.held_mb += need
                future.set_result(None)

    @asynccontextmanager
    async def reserved(self, mb: int, what: str) -> AsyncIterator[None]:
        """Hold ``mb`` for the block, waiting for it in turn at most the wait time."""
        if not self._waiters and mb <= self.free_mb:
            self.held_mb += mb
        else:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            entry = (mb, future)
            self._waiters.append(entry)
            try:
                async with asyncio.timeout(self._wait_s):
                    await asyncio.shield(future)
            except BaseException as exc:
                if future.done() and not future.cancelled():
                    self.release(mb)  # granted as we gave up: give it back
                else:
                    future.cancel()
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(entry)
                    self.release(0)  # the next in line may fit now
                if isinstance(exc, TimeoutError):
                    raise self._refusal(mb, what) from None
                raise
        try:
            yield
        finally:
            self.release(mb)
