"""A runner pod's streamed answer, read as it comes: events passed on, the last line kept.

A runner answers a run with one line per event as it happens, then the line of its
outcome (runner.wire).  The pod runs untrusted code, so each line is bounded, each
event is decoded strictly and held to the job's limits (output within its cap, results
within its budget, as many violations as a sandbox may report); events past those are
dropped, and the caller sees no more than a sandbox of this host could have sent.  The
whole exchange's deadline is the caller's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from runner.contract import (
    MAX_VIOLATIONS,
    Denial,
    Event,
    EventSink,
    Job,
    OutputChunk,
    RichResult,
)
from runner.results import ResultsBudget
from runner.wire import WireError, decode_event, is_event_line, outcome_cap

from controller.replies import ReplyTooLarge, ReplyUndecodable


class EventRelay:
    """Passes one run's events on, within what its job allows."""

    def __init__(self, job: Job, events: EventSink) -> None:
        self._job, self._events = job, events
        self._output = {"stdout": 0, "stderr": 0}
        self._results = ResultsBudget(job.limits.results_bytes)
        self._violations = 0

    def relay(self, line: bytes) -> None:
        try:
            event = decode_event(line, self._job)
        except WireError as exc:
            raise ReplyUndecodable(f"an event that breaks the contract: {exc}") from None
        if self._allowed(event):
            self._events(event)

    def _allowed(self, event: Event) -> bool:
        if isinstance(event, OutputChunk):
            sent = self._output[event.stream] + len(event.data)
            if sent > self._job.limits.output_bytes:
                return False
            self._output[event.stream] = sent
            return True
        if isinstance(event, RichResult):
            return self._results.add(event.display, event.type, event.data) is not None
        assert isinstance(event, Denial)
        self._violations += 1
        return self._violations <= MAX_VIOLATIONS


async def read_streamed(response: httpx.Response, job: Job, events: EventSink | None) -> bytes:
    """The last line of a runner's answer to ``job``; the lines before it are events,
    passed on to ``events`` (when given) as they arrive.  ReplyTooLarge for a line past
    the contract's caps, ReplyUndecodable for an answer that breaks it."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise ReplyUndecodable(f"the answer is encoded as {encoding}, not asked for")
    most = outcome_cap(job)
    relay = EventRelay(job, events) if events is not None else None
    buffer = bytearray()
    last: bytes | None = None
    async for chunk in _raw(response):
        buffer += chunk
        while (end := buffer.find(b"\n")) >= 0:
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            if last is not None:
                raise ReplyUndecodable("the answer went on after its last line")
            if not is_event_line(line):
                last = line
            elif relay is not None:
                relay.relay(line)
        if len(buffer) > most:
            raise ReplyTooLarge(most)
    if buffer.strip():
        if last is not None:
            raise ReplyUndecodable("the answer went on after its last line")
        last = bytes(buffer)
    if last is None:
        raise ReplyUndecodable("the answer ended before its outcome")
    return last


async def _raw(response: httpx.Response) -> AsyncIterator[bytes]:
    if response.is_stream_consumed:  # an answer made in memory (httpx.MockTransport)
        yield response.content
        return
    async for chunk in response.aiter_raw():
        yield chunk
