"""The warm pool (controller.pool) with members that are plain objects: its bounds and order."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from controller.pool import Backoff, PoolClosed, Takes, WarmPool
from tests.support import until


class Member:
    def __init__(self, n: int) -> None:
        self.n = n
        self.alive = True
        self.closed = 0


class Factory:
    """Starts members on demand; ``gate`` holds every start, ``fail`` makes them raise."""

    def __init__(self) -> None:
        self.ids = itertools.count(1)
        self.started: list[Member] = []
        self.gate: asyncio.Event | None = None
        self.fail: Exception | None = None
        self.in_progress = 0

    async def start(self) -> Member:
        self.in_progress += 1
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.fail is not None:
                raise self.fail
            member = Member(next(self.ids))
            self.started.append(member)
            return member
        finally:
            self.in_progress -= 1

    async def close(self, member: Member) -> None:
        member.closed += 1
        member.alive = False


def pool_of(factory: Factory, size: int, **options: object) -> WarmPool[Member]:
    return WarmPool(
        "member",
        size,
        start=factory.start,
        close=factory.close,
        alive=lambda m: m.alive,
        backoff=options.pop("backoff", Backoff(first_s=0.01, max_s=0.05)),  # type: ignore[arg-type]
        **options,  # type: ignore[arg-type]
    )


async def test_the_pool_fills_to_its_size_and_never_beyond() -> None:
    factory = Factory()
    pool = pool_of(factory, 3)
    pool.open()
    await until(lambda: pool.ready == 3, what="a full pool")
    pool.fill()
    pool.fill()
    await asyncio.sleep(0.01)
    assert len(factory.started) == 3
    taken = await pool.take(1)
    assert pool.ready == 2
    pool.fill()
    await until(lambda: pool.ready == 3, what="the refill")
    assert len(factory.started) == 4
    assert taken.n == 1, "the oldest first"
    await pool.stop()


async def test_without_a_pool_each_take_starts_its_own() -> None:
    factory = Factory()
    pool = pool_of(factory, 0)
    pool.open()
    first, second = await pool.take(1), await pool.take(1)
    assert (first.n, second.n) == (1, 2)
    assert pool.ready == 0
    await pool.stop()
    assert first.closed and second.closed, "handed out but not retired: stop closes them"


async def test_a_taker_waits_for_the_member_already_starting() -> None:
    factory = Factory()
    factory.gate = asyncio.Event()
    pool = pool_of(factory, 1)
    pool.open()
    taker = asyncio.create_task(pool.take(5))
    await asyncio.sleep(0.01)
    assert not taker.done() and factory.in_progress == 1, "no second start competes"
    factory.gate.set()
    assert (await taker).n == 1
    await pool.stop()


async def test_a_take_times_out() -> None:
    factory = Factory()
    factory.gate = asyncio.Event()
    pool = pool_of(factory, 1)
    pool.open()
    with pytest.raises(TimeoutError):
        await pool.take(0.05)
    await pool.stop()


async def test_dead_and_expired_members_are_never_handed_out() -> None:
    factory = Factory()
    pool = pool_of(factory, 2, max_age_s=60)
    pool.open()
    await until(lambda: pool.ready == 2, what="a full pool")
    factory.started[0].alive = False
    assert (await pool.take(1)).n == 2
    await until(lambda: factory.started[0].closed == 1, what="the dead one to be closed")

    old = pool_of(Factory(), 1, max_age_s=0.05)
    old.open()
    await until(lambda: old.ready == 1, what="a member")
    await asyncio.sleep(0.1)
    taken = await old.take(1)
    assert taken.n >= 2, "the first one aged past its deadline and was replaced"
    await pool.stop()
    await old.stop()


async def test_failing_starts_back_off_and_a_taker_gets_the_error() -> None:
    factory = Factory()
    factory.fail = RuntimeError("no chromium here")
    pool = pool_of(factory, 1, backoff=Backoff(first_s=30, max_s=30))
    pool.open()
    await asyncio.sleep(0.01)
    with pytest.raises(RuntimeError, match="no chromium"):
        await pool.take(5)  # the warm start failed and backs off: the taker tries itself
    assert pool.members == 0
    await pool.stop()


async def test_given_back_members_rejoin_up_to_the_size() -> None:
    factory = Factory()
    pool = pool_of(factory, 1)
    pool.open()
    await until(lambda: pool.ready == 1, what="a member")
    first = await pool.take(1)
    pool.fill()
    await until(lambda: pool.ready == 1, what="the refill")
    pool.give_back(first)  # the pool is full again: it is retired, not kept
    await until(lambda: first.closed == 1, what="the extra member to close")
    assert pool.ready == 1
    second = await pool.take(1)
    pool.give_back(second)  # room for it: it is the next one handed out
    assert await pool.take(1) is second
    await pool.stop()


async def test_stop_closes_everything_and_refuses_more() -> None:
    factory = Factory()
    pool = pool_of(factory, 2)
    pool.open()
    await until(lambda: pool.ready == 2, what="a full pool")
    taken = await pool.take(1)
    await pool.stop()
    assert all(m.closed for m in factory.started)
    assert taken.closed == 1
    with pytest.raises(PoolClosed):
        await pool.take(1)


def test_recent_takes_fade_and_the_lightest_is_told() -> None:
    takes = Takes()
    for _ in range(8):
        takes.add("heavy", 100.0)
    takes.add("light", 100.0)
    assert takes.count("heavy", 101.0) == pytest.approx(4.0)  # halved a second later
    assert takes.lightest("light", 101.0) and not takes.lightest("heavy", 101.0)
    # Long quiet, the light one is no longer counted: the heavy one is alone.
    assert takes.lightest("heavy", 110.0)
    assert takes.lightest("newcomer", 101.0)


async def test_the_last_ready_member_is_kept_for_a_lighter_taker() -> None:
    factory = Factory()
    pool = pool_of(factory, 2)
    pool.open()
    await until(lambda: pool.ready == 2, what="a full pool")
    await pool.take(1, "light")  # the light taker was here lately
    pool.fill()
    await until(lambda: pool.ready == 2, what="a full pool again")
    for _ in range(5):
        pool.retire(await pool.take(1, "heavy"))
        pool.fill()
        await until(lambda: pool.ready == 2, what="the pool refilled")
    gate = asyncio.Event()
    factory.gate = gate  # refills now wait
    first = await pool.take(1, "heavy")
    assert pool.ready == 1
    # The heavy taker may not have the last one: it waits for a refill ...
    waiting = asyncio.ensure_future(pool.take(5, "heavy"))
    await until(lambda: factory.in_progress >= 1, what="a refill under way")
    assert not waiting.done()
    # ... which the light one, coming now, does not: the kept member is its own at once.
    light = await pool.take(0.5, "light")
    assert light is not first
    gate.set()
    assert await waiting is not light


async def test_a_member_that_arrives_goes_to_the_waiting_taker_with_fewest_takes() -> None:
    factory = Factory()
    gate = asyncio.Event()
    factory.gate = gate
    pool = pool_of(factory, 1)
    pool.open()
    heavy_first = asyncio.ensure_future(pool.take(5, "heavy"))
    gate.set()
    await heavy_first
    for _ in range(3):
        pool.fill()
        await until(lambda: pool.ready == 1, what="one ready")
        await pool.take(1, "heavy")
    gate.clear()
    pool.fill()
    heavy = asyncio.ensure_future(pool.take(5, "heavy"))
    light = asyncio.ensure_future(pool.take(5, "light"))  # later, and lighter
    await until(lambda: factory.in_progress == 1, what="one start under way")
    gate.set()
    await light
    assert not heavy.done()  # the one member went to the lighter taker
    pool.fill()
    await heavy
