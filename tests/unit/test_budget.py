"""The memory budget: holds, waits in order of arrival, a bounded wait, and its default."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import ValidationError

from controller.budget import MemoryBudget, host_memory_mb
from controller.errors import Overloaded
from controller.settings import Settings

pytestmark = pytest.mark.unit
TOKEN = "t" * 32


async def test_waiters_are_served_in_order_of_arrival() -> None:
    budget = MemoryBudget(100)
    order: list[str] = []
    release_first = asyncio.Event()

    async def run(name: str, mb: int, gate: asyncio.Event | None = None) -> None:
        async with budget.reserved(mb, name):
            order.append(name)
            if gate is not None:
                await gate.wait()

    first = asyncio.create_task(run("first", 80, release_first))
    await asyncio.sleep(0)
    big = asyncio.create_task(run("big", 60))
    await asyncio.sleep(0)
    small = asyncio.create_task(run("small", 10))  # would fit now, but big came first
    await asyncio.sleep(0.01)
    assert order == ["first"]
    with pytest.raises(Overloaded):
        budget.hold(10, "a browser")  # nobody overtakes a waiter either
    release_first.set()
    await asyncio.gather(first, big, small)
    assert order == ["first", "big", "small"]
    assert budget.held_mb == 0


async def test_a_wait_past_its_bound_is_a_429_naming_the_setting() -> None:
    budget = MemoryBudget(100, wait_s=0.05)
    budget.hold(90, "the warm browsers")
    with pytest.raises(Overloaded) as refused:
        async with budget.reserved(20, "an execution"):
            pass
    assert "MEMORY_BUDGET_MB" in refused.value.message
    assert budget.held_mb == 90 and budget.free_mb == 10
    async with budget.reserved(10, "an execution"):  # the queue is empty again
        assert budget.free_mb == 0


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    budget = MemoryBudget(50)
    budget.hold(50, "everything")
    waiter = asyncio.create_task(budget.reserved(10, "x").__aenter__())
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    budget.release(50)
    budget.hold(50, "again")  # nothing was left waiting or held
    assert budget.held_mb == 50


def test_the_default_is_the_smaller_of_the_host_and_its_cgroup(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24576000 kB\nMemFree: 1 kB\n")
    limit = tmp_path / "memory.max"
    limit.write_text("max\n")
    assert host_memory_mb(meminfo, (limit,)) == 24576000 // 1024
    limit.write_text(f"{4096 << 20}\n")
    assert host_memory_mb(meminfo, (limit, tmp_path / "absent")) == 4096


def test_a_budget_that_cannot_hold_one_execution_is_refused_at_start() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(auth_token=TOKEN, memory_budget_mb=512, memory_limit_mb=1024)
    assert "MEMORY_BUDGET_MB" in str(refused.value)
    with pytest.raises(ValidationError, match="BROWSER_WARM_AGENTS"):
        Settings(
            auth_token=TOKEN, memory_budget_mb=2048, browser_warm_agents=2, memory_limit_mb=512
        )
    assert Settings(auth_token=TOKEN, memory_budget_mb=2048, memory_limit_mb=512).memory_budget
    # Kubernetes placement: the cluster's quotas, not this host's memory.
    assert Settings(auth_token=TOKEN, backend="kubernetes", memory_budget_mb=64).memory_budget
