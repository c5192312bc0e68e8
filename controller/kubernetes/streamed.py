"""A runner pod's streamed answer, read as it comes: events passed on, the last line kept.

A runner answers a run with one line per event as it happens, then the line of its
outcome (runner.wire).  The pod runs untrusted code, so nothing it sends is taken on
trust:
- each line is bounded, and so are all the events together (``events_cap``: what an
  honest runner can send for the job); past either, the answer is refused;
- each event is decoded strictly and held to the job's limits (output within its cap,
  results within its budget, as many violations as a sandbox may report); events past
  those are dropped, so the caller sees no more than a sandbox of this host could send;
- output is merged again (runner.coalesce) before it is passed on.
The whole exchange's deadline is the caller's.  The relay keeps the output it passed
on, which is what a run lost midway still has (its pod killed at its memory limit).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
from runner.coalesce import coalesced
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
from runner.wire import WireError, decode_event, events_cap, is_event_line, outcome_cap

from controller.replies import ReplyTooLarge, ReplyUndecodable


class EventRelay:
    """One run's events from its runner, passed on within what its job allows."""

    def __init__(self, job: Job, events: EventSink | None) -> None:
        self.job = job
        self._events = coalesced(events, asyncio.get_running_loop())
        self.output = {"stdout": bytearray(), "stderr": bytearray()}
        """The output passed on (or that would have been): at most the job's cap each."""
        self._results = ResultsBudget(job.limits.results_bytes)
        self._violations = 0
        self._left = events_cap(job)

    def relay(self, line: bytes) -> None:
        self._left -= len(line) + 1
        if self._left < 0:
            raise ReplyTooLarge(events_cap(self.job))
        try:
            event = decode_event(line, self.job)
        except WireError as exc:
            raise ReplyUndecodable(f"an event that breaks the contract: {exc}") from None
        if self._allowed(event) and self._events is not None:
            self._events(event)

    def flush(self) -> None:
        """What is held is passed on (before the outcome, and when the run is lost)."""
        if self._events is not None:
            self._events.flush()

    def _allowed(self, event: Event) -> bool:
        if isinstance(event, OutputChunk):
            kept = self.output[event.stream]
            if len(kept) + len(event.data) > self.job.limits.output_bytes:
                return False
            kept += event.data
            return True
        if isinstance(event, RichResult):
            return self._results.add(event.display, event.type, event.data) is not None
        assert isinstance(event, Denial)
        self._violations += 1
        return self._violations <= MAX_VIOLATIONS


async def read_streamed(response: httpx.Response, relay: EventRelay) -> bytes:
    """The last line of a runner's answer to ``relay.job``; the lines before it are its
    events, passed on as they arrive.  ReplyTooLarge past the contract's caps,
    ReplyUndecodable for an answer that breaks it."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise ReplyUndecodable(f"the answer is encoded as {encoding}, not asked for")
    most = outcome_cap(relay.job)
    buffer = bytearray()
    scanned = 0  # the buffer before this holds no newline: each byte is looked at once
    last: bytes | None = None
    try:
        async for chunk in _raw(response):
            buffer += chunk
            while (end := buffer.find(b"\n", scanned)) >= 0:
                line = bytes(buffer[:end])
                del buffer[: end + 1]
                scanned = 0
                if last is not None:
                    raise ReplyUndecodable("the answer went on after its last line")
                if is_event_line(line):
                    relay.relay(line)
                else:
                    last = line
            scanned = len(buffer)
            if len(buffer) > most:
                raise ReplyTooLarge(most)
    finally:
        relay.flush()
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
