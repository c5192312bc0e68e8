"""Output events merged (runner.coalesce): the first at once, the rest per interval."""

from __future__ import annotations

import asyncio

from runner.coalesce import FLUSH_S, Coalesced
from runner.contract import Denial, Event, OutputChunk


async def test_the_first_piece_goes_at_once_and_the_rest_is_merged() -> None:
    seen: list[Event] = []
    sink = Coalesced(seen.append, asyncio.get_running_loop())
    for i in range(1000):
        sink(OutputChunk("stdout", b"x", float(i)))
    assert seen == [OutputChunk("stdout", b"x", 0.0)]  # at once: the first byte is not late
    await asyncio.sleep(FLUSH_S * 3)  # the interval's timer has sent the rest
    assert seen[1:] == [OutputChunk("stdout", b"x" * 999, 1.0)]


async def test_another_kind_of_event_sends_what_is_held_first() -> None:
    seen: list[Event] = []
    sink = Coalesced(seen.append, asyncio.get_running_loop())
    sink(OutputChunk("stdout", b"a", 1.0))
    sink(OutputChunk("stdout", b"b", 2.0))
    sink(OutputChunk("stderr", b"c", 3.0))
    sink(Denial("filesystem", "/x", "no"))
    sink(OutputChunk("stdout", b"d", 4.0))
    sink.flush()  # the run's end
    assert seen == [
        OutputChunk("stdout", b"a", 1.0),
        OutputChunk("stdout", b"b", 2.0),
        OutputChunk("stderr", b"c", 3.0),
        Denial("filesystem", "/x", "no"),
        OutputChunk("stdout", b"d", 4.0),
    ]
    await asyncio.sleep(FLUSH_S * 2)
    assert len(seen) == 5  # no timer outlives the flush
