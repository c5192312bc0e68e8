"""The rules every kind of session shares (controller.sessions.registry), with a fake kind."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from controller.errors import InvalidRequest, NotFound, Overloaded
from controller.keys import Caller
from controller.sessions.registry import Registry, Session, SessionKind, SessionNames
from controller.sessions.timeouts import SessionTimeouts

NAMES = SessionNames("thing", "th")
KIND = SessionKind(NAMES, 3, "MAX_THINGS", lambda caller: caller.max_contexts, "maxThings")
A = Caller("a", 1, 1, 1, max_contexts=2)
B = Caller("b", 1, 1, 1, max_contexts=2)


@dataclass(kw_only=True)
class Thing(Session):
    held: str


class Closed:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.event = asyncio.Event()

    async def __call__(self, session: Thing, why: str) -> None:
        self.calls.append((session.held, why))
        self.event.set()


def thing(owner: Caller, held: str = "x", idle_s: int = 60, lifetime_s: int = 600) -> Thing:
    return Thing(
        session_id=NAMES.new_id(),
        owner=owner.name,
        labels={},
        idle_timeout_s=idle_s,
        max_lifetime_s=lifetime_s,
        held=held,
    )


def test_ids_are_generated_and_recognised() -> None:
    first, second = NAMES.new_id(), NAMES.new_id()
    assert first != second and NAMES.is_id(first)
    assert not NAMES.is_id("th-../x") and not NAMES.is_id("bs-" + first[3:])


async def test_a_session_is_its_owners_alone() -> None:
    registry: Registry[Thing] = Registry(KIND, Closed())
    mine = thing(A)
    registry.add(mine)
    assert registry.get(mine.session_id, A) is mine
    with pytest.raises(NotFound, match="no thing"):
        registry.get(mine.session_id, B)
    assert registry.sessions(B) == [] and registry.sessions(A) == [mine]
    assert registry.sessions() == [mine]


async def test_caps_count_creations_under_way() -> None:
    registry: Registry[Thing] = Registry(KIND, Closed())
    with registry.creating(A), registry.creating(A):
        with pytest.raises(Overloaded, match="maxThings of its key"), registry.creating(A):
            pass
        with (
            registry.creating(B),
            pytest.raises(Overloaded, match="setting MAX_THINGS"),
            registry.creating(B),
        ):
            pass
    registry.add(thing(A))
    registry.add(thing(A))
    with pytest.raises(Overloaded), registry.creating(A):
        pass
    with registry.creating(B):  # the counts went back down
        pass


async def test_close_releases_once_and_the_session_is_gone() -> None:
    closed = Closed()
    registry: Registry[Thing] = Registry(KIND, closed)
    mine = thing(A, "agent")
    registry.add(mine)
    await registry.close(mine, "deleted")
    await registry.close(mine, "deleted")
    assert closed.calls == [("agent", "deleted")]
    with pytest.raises(NotFound):
        registry.get(mine.session_id, A)


async def test_an_idle_session_is_reaped_but_not_while_in_use() -> None:
    closed = Closed()
    registry: Registry[Thing] = Registry(KIND, closed)
    registry.start()
    try:
        busy, idle = thing(A, "busy", idle_s=0), thing(A, "idle", idle_s=0)
        async with registry.using(busy):
            registry.add(busy)
            registry.add(idle)
            await asyncio.wait_for(closed.event.wait(), 5)
            assert closed.calls == [("idle", "expired")]
            assert registry.get(busy.session_id, A) is busy  # in use: not idle
        closed.event.clear()
        await asyncio.wait_for(closed.event.wait(), 5)
        assert closed.calls[-1] == ("busy", "expired")
    finally:
        left = await registry.stop()
    assert left == []


async def test_stop_hands_back_every_open_session() -> None:
    registry: Registry[Thing] = Registry(KIND, Closed())
    registry.start()
    sessions = [thing(A), thing(B)]
    for session in sessions:
        registry.add(session)
    left = await registry.stop()
    assert left == sessions and all(s.closed for s in left)


TIMEOUTS = SessionTimeouts(300, 3600, 1800, 7200, "MAX_IDLE", "MAX_LIFE")


def test_timeouts_default_and_refuse_above_their_ceilings() -> None:
    assert TIMEOUTS.checked(None, None) == (300, 1800)
    assert TIMEOUTS.checked(10, 20) == (10, 20)
    with pytest.raises(InvalidRequest) as idle:
        TIMEOUTS.checked(3601, None)
    assert idle.value.details[0]["field"] == "idleTimeoutS"
    assert "setting MAX_IDLE" in idle.value.details[0]["message"]
    with pytest.raises(InvalidRequest) as life:
        TIMEOUTS.checked(None, 7201)
    assert life.value.details[0]["field"] == "maxLifetimeS"
    low_ceiling = SessionTimeouts(300, 60, 1800, 100, "A", "B")
    assert low_ceiling.checked(None, None) == (60, 100)  # a default gives way
