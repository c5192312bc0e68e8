"""A runner pod's streamed answer, read by the controller (behind httpx.MockTransport)."""

from __future__ import annotations

import httpx
import pytest
from runner.contract import Denial, Event, Job, Outcome, OutputChunk, RichResult, RunLimits
from runner.wire import encode_event, encode_outcome, events_cap

from controller.kubernetes.streamed import EventRelay, read_streamed
from controller.replies import ReplyTooLarge, ReplyUndecodable

JOB = Job("ex-1", "x", limits=RunLimits(output_bytes=4, results_bytes=100))
OUTCOME = encode_outcome(
    "ex-1",
    Outcome(
        exit_code=0,
        signal=None,
        timed_out=False,
        stdout=b"",
        stderr=b"",
        stdout_truncated=False,
        stderr_truncated=False,
        duration_ms=1.0,
    ),
)


async def answered(body: bytes, headers: dict[str, str] | None = None) -> tuple[bytes, list[Event]]:
    transport = httpx.MockTransport(
        lambda _: httpx.Response(200, stream=httpx.ByteStream(body), headers=headers)
    )
    seen: list[Event] = []
    async with (
        httpx.AsyncClient(transport=transport) as client,
        client.stream("POST", "http://runner.test/run") as response,
    ):
        return await read_streamed(response, EventRelay(JOB, seen.append)), seen


def lines(*events: Event) -> bytes:
    return b"".join(encode_event(e) + b"\n" for e in events)


async def test_events_are_passed_on_and_the_last_line_returned() -> None:
    sent = (
        OutputChunk("stdout", b"ab", 1.0),
        RichResult("text/plain", "42", 0),
        Denial("network", "x:1", "no"),
    )
    last, seen = await answered(lines(*sent) + OUTCOME + b"\n")
    assert (last, seen) == (OUTCOME, list(sent))


async def test_events_beyond_the_jobs_limits_are_dropped() -> None:
    body = lines(
        OutputChunk("stdout", b"abc", 1.0),
        OutputChunk("stdout", b"de", 2.0),  # 5 bytes of stdout: the cap is 4
        OutputChunk("stderr", b"e", 3.0),
        *(RichResult("text/plain", "x" * 30, i) for i in range(3)),  # the budget holds two
    )
    _, seen = await answered(body + OUTCOME)
    assert seen[:2] == [OutputChunk("stdout", b"abc", 1.0), OutputChunk("stderr", b"e", 3.0)]
    assert [e.display for e in seen[2:] if isinstance(e, RichResult)] == [0, 1]
    assert len(seen) == 4


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"", "ended before its outcome"),
        (OUTCOME + b"\n" + OUTCOME, "went on after its last line"),
        (b'{"event": "stdout", "data": "!!", "at": 1}\n' + OUTCOME, "breaks the contract"),
    ],
)
async def test_an_answer_that_breaks_the_contract_is_refused(body: bytes, why: str) -> None:
    with pytest.raises(ReplyUndecodable, match=why):
        await answered(body)


async def test_a_line_past_the_caps_is_refused_before_it_ends() -> None:
    with pytest.raises(ReplyTooLarge):
        await answered(b"x" * (64 << 20))


async def test_a_compressed_answer_is_refused() -> None:
    with pytest.raises(ReplyUndecodable, match="gzip"):
        await answered(OUTCOME, {"content-encoding": "gzip"})


async def test_events_past_what_an_honest_runner_sends_end_the_answer() -> None:
    # Each event is small and within the rules; together they are more than the job's.
    violation = encode_event(Denial("network", "x:1", "no")) + b"\n"
    flood = violation * (events_cap(JOB) // len(violation) + 1)
    with pytest.raises(ReplyTooLarge):
        await answered(flood + OUTCOME)


async def test_what_a_lost_run_streamed_is_kept() -> None:
    relay = EventRelay(JOB, None)
    relay.relay(encode_event(OutputChunk("stdout", b"ab", 1.0)))
    relay.relay(encode_event(OutputChunk("stdout", b"cde", 2.0)))  # past the cap of 4
    assert bytes(relay.output["stdout"]) == b"ab"
