"""Server-Sent Events for a run, when the caller asks with ``Accept: text/event-stream``.

    event: stdout | stderr   data: {"text", "timestamp"}        output as it is read
    event: result            data: {"type", "data", "display"}  a rich result as displayed
    event: violation         data: {"kind", "target", "detail"} as the sandbox refuses it
    event: done              data: the answer a call without streaming gets, exactly
    event: error             data: {"status", "error", "message", ...}  the run failed
                                   on the platform's side after the stream began

Everything before the run begins (validation, admission, a context that is busy) is an
ordinary HTTP error: the stream starts only once the run has.  A quiet stream gets a
comment line every KEEPALIVE_S so that proxies do not cut it; the answer says
``X-Accel-Buffering: no`` and ``Cache-Control: no-cache`` so that they do not hold it
either.  A caller that disconnects is noticed at once (the ASGI receive channel is
watched, not only the next write) and the run is cancelled.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import logging
from collections.abc import Coroutine
from typing import Any, Protocol

from fastapi import Request, Response
from runner.contract import Event, OutputChunk, RichResult
from starlette.types import Receive, Scope, Send

from controller.errors import ControllerError
from controller.execution.results import DENIAL_KINDS

log = logging.getLogger(__name__)

EVENT_STREAM = "text/event-stream"
KEEPALIVE_S = 15.0
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def wants_stream(request: Request) -> bool:
    """Whether the caller accepts an event stream (``Accept: text/event-stream``)."""
    accepted = request.headers.get("accept", "")
    return any(part.split(";")[0].strip().lower() == EVENT_STREAM for part in accepted.split(","))


def frame(name: str, data: bytes) -> bytes:
    """One event (``data`` is one line of JSON: it holds no newline)."""
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


def _json(value: dict[str, Any]) -> bytes:
    # "replace": text that reached here unchecked still cannot break the stream.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "replace")


class Answer(Protocol):
    def json_bytes(self) -> bytes: ...


class EventStream:
    """The events of one run, framed and queued for its caller (a RunEvents)."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.begun = asyncio.Event()
        # Output is decoded as it comes, a character cut between chunks kept for the next:
        # the streamed text, joined, is the answer's.
        self._text = {
            name: codecs.getincrementaldecoder("utf-8")(errors="replace")
            for name in ("stdout", "stderr")
        }

    def started(self) -> None:
        self.begun.set()

    def __call__(self, event: Event) -> None:
        if isinstance(event, OutputChunk):
            decoder = self._text.get(event.stream)
            if decoder is None:
                return
            text = decoder.decode(event.data)
            if text:
                self._put(event.stream, {"text": text, "timestamp": event.at})
        elif isinstance(event, RichResult):
            self._put("result", {"type": event.type, "data": event.data, "display": event.display})
        else:
            kind = DENIAL_KINDS.get(event.kind, "other")
            self._put("violation", {"kind": kind, "target": event.target, "detail": event.detail})

    def _put(self, name: str, data: dict[str, Any]) -> None:
        self._queue.put_nowait(frame(name, _json(data)))

    def end(self, last: bytes) -> None:
        """The run is over: what the decoders still hold, then ``last``, then the end."""
        for name, decoder in self._text.items():
            rest = decoder.decode(b"", final=True)
            if rest:
                self._put(name, {"text": rest, "timestamp": None})
        self._queue.put_nowait(last)
        self._queue.put_nowait(None)

    async def next(self, timeout_s: float) -> bytes | None:
        """The next frame; a keep-alive comment after ``timeout_s`` of quiet; None at the end."""
        try:
            return await asyncio.wait_for(self._queue.get(), timeout_s)
        except TimeoutError:
            return b": keep-alive\n\n"


def last_frame(task: asyncio.Task[Any]) -> bytes:
    """The ``done`` or ``error`` event of a finished run; never raises (the stream must
    end whatever the run left)."""
    try:
        return _last_frame(task)
    except Exception:
        log.exception("a streamed run's answer could not be sent")
        body = {"status": 500, "error": "internal_error", "message": "internal error"}
        return frame("error", _json(body))


def _last_frame(task: asyncio.Task[Any]) -> bytes:
    if task.cancelled():
        return frame("error", _json({"status": 499, "error": "cancelled", "message": "cancelled"}))
    exc = task.exception()
    if exc is None:
        answer: Answer = task.result()
        return frame("done", answer.json_bytes())
    if isinstance(exc, ControllerError):
        return frame("error", _json({"status": exc.status_code, **exc.body()}))
    log.error("a streamed run failed", exc_info=exc)
    body = {"status": 500, "error": "internal_error", "message": "internal error"}
    return frame("error", _json(body))


async def streamed(run: Coroutine[Any, Any, Answer], events: EventStream) -> Response:
    """Start ``run``; once it has begun, the response that streams its events.  A run
    that ends before it begins (refused: invalid, overloaded, busy) answers as a call
    without streaming does, its error raised for the error handler."""
    task = asyncio.ensure_future(run)
    begun = asyncio.ensure_future(events.begun.wait())
    try:
        await asyncio.wait({task, begun}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        begun.cancel()
    if not events.begun.is_set():
        answer = await task
        return Response(answer.json_bytes(), media_type="application/json")
    task.add_done_callback(lambda t: events.end(last_frame(t)))
    return EventStreamResponse(events, task)


class EventStreamResponse(Response):
    """Sends a run's events as they come, and stops the run if the caller goes away."""

    media_type = EVENT_STREAM

    def __init__(self, events: EventStream, task: asyncio.Task[Any]) -> None:
        # Not Response.__init__: that would give the stream a Content-Length (of nothing).
        self.status_code = 200
        self.background = None
        self.init_headers(HEADERS)
        self._events, self._task = events, task

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = asyncio.ensure_future(self._until_disconnected(receive))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            while not gone.done():
                pending = asyncio.ensure_future(self._events.next(KEEPALIVE_S))
                await asyncio.wait({pending, gone}, return_when=asyncio.FIRST_COMPLETED)
                if not pending.done():
                    pending.cancel()
                    break
                chunk = pending.result()
                if chunk is None:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    return
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except OSError:  # the connection broke under a write
            pass
        finally:
            gone.cancel()
            # Unless it has ended, the caller went away before the end: the run is
            # cancelled, which ends an execution (its sandbox killed, its slot freed) and
            # interrupts a context's call.
            self._task.cancel()

    async def _until_disconnected(self, receive: Receive) -> None:
        try:
            while (await receive())["type"] != "http.disconnect":
                pass
        except Exception:  # not a disconnect: the stream goes on, unwatched
            log.exception("a streamed run's connection could not be watched")
            await asyncio.Event().wait()
