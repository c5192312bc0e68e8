"""Output events, merged so that a program writing a byte at a time costs no more to pass on.

A sandbox's output is read as it comes: a program that flushes after every byte would
make every read an event, and every event costs the supervisor (and, in Kubernetes, the
controller that decodes the runner's stream) a frame, a JSON document and a write.  So
the first piece of output goes out at once (the time to the first byte is unchanged),
and what follows within FLUSH_S of it is merged into one event per stream, sent when the
interval ends, when another kind of event comes (order is kept), or at the run's end.
"""

from __future__ import annotations

import asyncio

from runner.contract import Event, EventSink, OutputChunk

FLUSH_S = 0.02
"""At most one output event per stream in this interval, after the first."""
MAX_HELD = 64 * 1024
"""Held output beyond this is sent at once."""


class Coalesced:
    """An EventSink in front of ``sink`` that merges close output events."""

    def __init__(self, sink: EventSink, loop: asyncio.AbstractEventLoop) -> None:
        self._sink, self._loop = sink, loop
        self._held: OutputChunk | None = None
        self._held_parts: list[bytes] = []
        self._held_size = 0
        self._quiet_until = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def __call__(self, event: Event) -> None:
        if not isinstance(event, OutputChunk):
            self.flush()
            self._sink(event)
            return
        if self._held is not None and self._held.stream != event.stream:
            self.flush()
        now = self._loop.time()
        if self._held is None and now >= self._quiet_until:
            self._quiet_until = now + FLUSH_S
            self._sink(event)  # the first after a quiet interval: at once
            return
        if self._held is None:
            self._held = event
            self._timer = self._loop.call_at(self._quiet_until, self.flush)
        self._held_parts.append(event.data)
        self._held_size += len(event.data)
        if self._held_size >= MAX_HELD:
            self.flush()

    def flush(self) -> None:
        """Send what is held now (the run's end calls it too)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        held, self._held = self._held, None
        if held is None:
            return
        data = b"".join(self._held_parts)
        self._held_parts, self._held_size = [], 0
        self._quiet_until = self._loop.time() + FLUSH_S
        self._sink(OutputChunk(held.stream, data, held.at))


def coalesced(sink: EventSink | None, loop: asyncio.AbstractEventLoop) -> Coalesced | None:
    return Coalesced(sink, loop) if sink is not None else None
