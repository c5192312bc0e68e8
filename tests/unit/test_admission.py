"""Fair admission as data: caps, turns, and a waiter cancelled at the wrong moment."""

from __future__ import annotations

import asyncio

from controller.execution.admission import Admission
from controller.keys import Caller
from tests.support import until

A = Caller("team-a", 1, 8, 1)
B = Caller("team-b", 1, 8, 1)


async def hold(admission: Admission, caller: Caller, release: asyncio.Event) -> None:
    async with admission.slot(caller):
        await release.wait()


async def test_a_waiter_cancelled_just_as_a_slot_frees_takes_nothing_with_it() -> None:
    """The cancelled waiter's future is done before its task can leave the queue: the
    slot freed in that moment goes to the next one, and none leaks."""
    admission = Admission(running=1, queued=8)
    second_done, third_done = asyncio.Event(), asyncio.Event()
    async with admission.slot(A):
        second = asyncio.create_task(hold(admission, B, second_done))
        third = asyncio.create_task(hold(admission, A, third_done))
        await until(lambda: admission.admitted == 3, what="three admitted")
        second.cancel()  # its future is cancelled now; its task runs later
    # Leaving the block freed the slot before the cancelled task could run.
    third_done.set()
    await asyncio.wait_for(third, 5)  # served, not stuck behind the cancelled one
    assert second.cancelled()
    assert (admission.running, admission.admitted) == (0, 0)
