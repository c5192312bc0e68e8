"""The events pipe read from outside the sandbox: rich results and violations, checked.

The code's process writes one JSON line per event (runner.display).  It is as untrusted
as the code: every line is bounded, every result's type must be one of RESULT_TYPES
and its data what the type says (base64 that decodes to a PNG, JSON that parses), and
the run's results budget is counted here, against the job's limit, never against what
the sandbox claims.  A result that does not pass is reported (``SkippedResult``), not
dropped silently.  The same check (``result_refusal``) serves the JSON contract's
decoder (runner.wire), where a runner pod's results arrive.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import time

from runner.contract import (
    MAX_RESULTS,
    MAX_VIOLATIONS,
    RESULT_TYPES,
    EventSink,
    RichResult,
    SkippedResult,
)
from runner.protocol import PipeReader, denial_of, int_or_none, text_of

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LINE_SLACK = 64 * 1024
"""What a line may hold beyond the budget left: its JSON framing, a violation."""
MAX_LINES = 4 * (MAX_RESULTS + MAX_VIOLATIONS)
"""Lines a run may write: a flood of empty ones costs a line's work each, so it ends here."""
PIPE_READS = 8
"""Reads that empty the pipe between runs: a few chunks (its writers wait beyond), however
fast the code's background work writes; what is left counts against the next run."""
MAX_SIZE = 1 << 50


def result_refusal(mime: str, data: str) -> str | None:
    """Why a representation cannot be returned as ``mime`` (``invalid``), or None."""
    if mime not in RESULT_TYPES:
        return "invalid"
    if mime == "image/png":
        try:
            raw = binascii.a2b_base64(data, strict_mode=True)
        except (binascii.Error, ValueError):
            return "invalid"
        return None if raw.startswith(PNG_SIGNATURE) else "invalid"
    if mime == "application/json":
        try:
            json.loads(data)
        except (ValueError, RecursionError):
            return "invalid"
    return None


def result_size(mime: str, data: str) -> int:
    """What a representation counts against a results budget, decoded: never more than
    runner.display counted for it (the same, with its text escaped as JSON)."""
    return len(data) + len(mime) + 8


class ResultsBudget:
    """One run's results as they come: kept while they fit, reported when they do not."""

    def __init__(self, most: int) -> None:
        self.room = most
        self.results: list[RichResult] = []
        self.skipped: list[SkippedResult] = []
        self.displays = 0

    def skip(self, mime: str | None, display: int | None, size: int | None, why: str) -> None:
        if len(self.skipped) < MAX_RESULTS:
            self.skipped.append(SkippedResult(mime, display, size, why))

    def add(self, display: int, mime: object, data: object) -> RichResult | None:
        """The representation, kept; None when it is refused (and then reported)."""
        if not isinstance(mime, str) or not isinstance(data, str):
            self.skip(None, display, None, "invalid")
            return None
        mime, data = text_of(mime[:100]), text_of(data)
        if len(self.results) >= MAX_RESULTS:
            self.skip(mime, display, len(data), "too_many")
            return None
        size = result_size(mime, data)
        if size > self.room:
            self.skip(mime, display, len(data), "too_large")
            return None
        refusal = result_refusal(mime, data)
        if refusal is not None:
            self.skip(mime, display, len(data), refusal)
            return None
        self.room -= size
        result = RichResult(mime, data, display)
        self.results.append(result)
        return result


class EventsReader(PipeReader):
    """Reads the events pipe during a run (``start`` .. ``finish``), and nothing between.

    Lines are kept up to the run's results budget and a little more (LINE_SLACK);
    beyond it the rest of the run's events are read and dropped, and that is reported
    once.  Each result and violation goes to ``sink`` as it is read.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self._line = bytearray()
        self._room = 0
        self._overflowed = False
        self._violations = 0
        self._sink: EventSink | None = None
        self._running = False
        self.budget = ResultsBudget(0)
        super().__init__(loop, fd)
        self._pause()

    def _pause(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)

    def start(self, most: int, sink: EventSink | None) -> None:
        """A run begins: results up to ``most`` bytes; what was written before is not its."""
        self._running = False
        for _ in range(PIPE_READS):  # written between runs: nobody's, dropped
            if not self.read_once():
                break
        self._running = True
        self._line, self._overflowed, self._violations = bytearray(), False, 0
        self._lines_left = MAX_LINES
        self._room = most + LINE_SLACK
        self._sink = sink
        self.budget = ResultsBudget(most)
        if self._fd >= 0:
            self._loop.add_reader(self._fd, self.read_once)

    def stop(self) -> None:
        """The run broke off: nothing more is read for it, or told."""
        self._pause()
        self._running, self._sink = False, None

    def finish(self) -> ResultsBudget:
        """The run's results: what it wrote before it ended is in the pipe already."""
        for _ in range(64):  # a pipe holds a few chunks: its writers wait beyond
            if not self.read_once():
                break
        self._pause()
        self._running, self._sink = False, None
        budget, self.budget = self.budget, ResultsBudget(0)
        return budget

    def on_data(self, data: bytes) -> None:
        if not data or not self._running or self._overflowed:
            return  # at the end, what no run owns, or past what a run may send
        while data:
            end = data.find(b"\n")
            piece = data if end < 0 else data[: end + 1]
            data = b"" if end < 0 else data[end + 1 :]
            if len(piece) > self._room or (end >= 0 and self._lines_left <= 0):
                self._overflowed = True  # the rest of the run's events are dropped unread
                # Said whatever was said before: it is once, and it is what was lost.
                self.budget.skipped.append(SkippedResult(None, None, None, "too_large"))
                self._line.clear()
                return
            self._room -= len(piece)
            self._line += piece
            if end >= 0:
                self._lines_left -= 1
                line, self._line = bytes(self._line[:-1]), bytearray()
                self._event(line)

    def _event(self, line: bytes) -> None:
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            self.budget.skip(None, None, None, "invalid")
            return
        if not isinstance(record, dict):
            self.budget.skip(None, None, None, "invalid")
            return
        if "violation" in record:
            self._violation(record["violation"])
            return
        bundle, omitted = record.get("result"), record.get("omitted") or {}
        budget = self.budget
        display = budget.displays
        budget.displays += 1
        if (
            not isinstance(bundle, dict)
            or not isinstance(omitted, dict)
            or len(bundle) + len(omitted) > len(RESULT_TYPES)  # one object, each type once
        ):
            budget.skip(None, display, None, "invalid")
            return
        for mime, data in bundle.items():
            result = budget.add(display, mime, data)
            if result is not None and self._sink is not None:
                self._sink(result)
        for mime, size in omitted.items():
            said = int_or_none(size)
            known = said if said is not None and 0 <= said <= MAX_SIZE else None
            budget.skip(text_of(str(mime)[:100]), display, known, "too_large")

    def _violation(self, value: object) -> None:
        denial = denial_of(value)
        if denial is None or self._violations >= MAX_VIOLATIONS:
            return
        self._violations += 1
        if self._sink is not None:
            self._sink(denial)


def now_ms() -> float:
    """A chunk's timestamp: milliseconds since the epoch."""
    return round(time.time() * 1000, 3)
