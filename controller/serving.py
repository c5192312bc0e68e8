"""The HTTP server and its own limits: connections, request heads, stalled answers, descriptors.

uvicorn bounds none of these.  A connection that never sends its request head, or sends
it a byte at a time, stays open for ever; an answer its client never reads stays in
memory, whole, for as long as the connection lives; and connections are accepted until
the process runs out of descriptors, when sandboxes can no longer be started either.
Over uvicorn's own protocol (httptools), here:

- a request head must be complete within HEADER_TIMEOUT_S of the connection, or of the
  previous answer on a kept-alive one, or the connection is dropped; and within
  MAX_HEAD_BYTES, or it is answered 431 and closed (httptools keeps every header, and
  joins a long one piece by piece, at a cost that grows with its square);
- an answer its client stops reading (its buffer above the transport's high-water mark)
  for WRITE_TIMEOUT_S in all, however many times it reads a little, is dropped with its
  connection, and the answers stalled at once hold at most STALLED_ANSWERS_MB: beyond
  it, those that first stalled longest ago go first;
- at most MAX_CONNECTIONS connections: one more drops the connection that has waited
  longest for its request head (a caller sending a request is never the one dropped),
  or is dropped itself when no connection is waiting;
- the descriptor limit is raised to its hard limit at start, and MAX_CONNECTIONS held to
  half of it, so that sandboxes, pipes and uploads always find descriptors.

The first SIGTERM drains (controller.draining) before the server closes its sockets.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import signal
import socket
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from controller.draining import Drain
from controller.settings import Settings

log = logging.getLogger(__name__)
MIB = 1024 * 1024
MAX_HEAD_BYTES = 64 * 1024
"""A request's line and headers at most (nginx's default allows 32 KiB)."""
HEAD_TOO_LARGE = json.dumps(
    {
        "error": "head_too_large",
        "message": f"the request's line and headers exceed {MAX_HEAD_BYTES} bytes",
    }
).encode()


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int
    header_timeout_s: float
    write_timeout_s: float
    stalled_bytes: int


class ConnectionGuard:
    """The connections of one server: those waiting for a request head, and those whose
    answer is stalled, each oldest first."""

    def __init__(self, limits: ConnectionLimits, dropped: Callable[[str], None]) -> None:
        """``dropped(reason)`` counts each connection dropped (the service's metrics)."""
        self.limits = limits
        self.dropped = dropped
        self.open: set[GuardedProtocol] = set()
        self.waiting: OrderedDict[GuardedProtocol, None] = OrderedDict()
        self.stalled: OrderedDict[GuardedProtocol, None] = OrderedDict()

    def opened(self, connection: GuardedProtocol) -> None:
        self.open.add(connection)
        if len(self.open) <= self.limits.max_connections:
            return
        oldest = next(iter(self.waiting), connection)
        oldest.drop("evicted")

    def closed(self, connection: GuardedProtocol) -> None:
        self.open.discard(connection)
        self.waiting.pop(connection, None)
        self.stalled.pop(connection, None)

    def stalling(self, connection: GuardedProtocol) -> None:
        self.stalled.setdefault(connection, None)  # in the order they first stalled
        held = sum(c.buffered for c in self.stalled)
        while held > self.limits.stalled_bytes and self.stalled:
            oldest = next(iter(self.stalled))
            held -= oldest.buffered
            oldest.drop("write_timeout")


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, under its server's ConnectionGuard."""

    guard: ConnectionGuard

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        self._head_after_drain = False
        self._head_bytes = 0
        self._stall_left = self.guard.limits.write_timeout_s
        """What is left of the answer's stalled time (WRITE_TIMEOUT_S in all)."""
        self._stalled_at = 0.0

    @property
    def buffered(self) -> int:
        """Bytes of the answer written but not yet taken by the client."""
        return self.transport.get_write_buffer_size() if self.transport is not None else 0

    def drop(self, reason: str) -> None:
        """Close at once, whatever is unsent: what a client will not take is not kept."""
        self.guard.dropped(reason)
        self.guard.closed(self)
        self._cancel_timers()
        self.transport.abort()  # even one closing already: its unsent data goes too

    def refuse_head(self) -> None:
        """Answer 431 and close: the head is larger than any this service needs."""
        self.guard.dropped("head_too_large")
        self.guard.closed(self)
        self._cancel_timers()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\nconnection: close\r\n"
            b"content-length: " + str(len(HEAD_TOO_LARGE)).encode() + b"\r\n\r\n" + HEAD_TOO_LARGE
        )
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # Still waiting for the head once this is parsed: all of it was head (what came
        # with a head that completed is its body, or the next request's head in part).
        if self in self.guard.waiting and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self.refuse_head()

    def _await_head(self) -> None:
        # The previous answer, if any, is all sent: the next one has a stalled time of its own.
        self._stall_left = self.guard.limits.write_timeout_s
        self.guard.stalled.pop(self, None)
        self._head_bytes = 0
        self._cancel(self._head_timer)
        self._head_timer = self.loop.call_later(
            self.guard.limits.header_timeout_s, self.drop, "header_timeout"
        )
        self.guard.waiting[self] = None

    def _cancel(self, timer: asyncio.TimerHandle | None) -> None:
        if timer is not None:
            timer.cancel()

    def _cancel_timers(self) -> None:
        self._cancel(self._head_timer)
        self._cancel(self._write_timer)
        self._head_timer = self._write_timer = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()
        self.guard.opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        self.guard.closed(self)
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        self._cancel(self._head_timer)
        self._head_timer = None
        self.guard.waiting.pop(self, None)
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)  # the next request's head is in already
        super().on_response_complete()
        if pipelined or self.transport.is_closing():
            return
        # uvicorn calls this once the answer is written, not sent: while the client has
        # yet to take it, the write timeout runs, and the next head's clock only after.
        if self.flow.write_paused:
            self._head_after_drain = True
        else:
            self._await_head()

    def handle_websocket_upgrade(self) -> None:
        # The connection becomes another protocol's: it leaves this guard's count.
        self._cancel_timers()
        self.guard.closed(self)
        super().handle_websocket_upgrade()

    def pause_writing(self) -> None:
        super().pause_writing()
        self._cancel(self._write_timer)
        self._stalled_at = self.loop.time()
        self._write_timer = self.loop.call_later(self._stall_left, self.drop, "write_timeout")
        self.guard.stalling(self)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._cancel(self._write_timer)
        self._write_timer = None
        # A client that takes a little now and then is still counted from its first stall.
        self._stall_left -= self.loop.time() - self._stalled_at
        if self._head_after_drain:
            self._head_after_drain = False
            self._await_head()


def guarded_protocol(guard: ConnectionGuard) -> type[GuardedProtocol]:
    """The protocol class of one server (uvicorn instantiates it per connection)."""
    return type("ServerProtocol", (GuardedProtocol,), {"guard": guard})


def raise_open_files() -> int:
    """The descriptor limit, raised to its hard limit; the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def connection_limits(settings: Settings, open_files: int) -> ConnectionLimits:
    most = min(settings.max_connections, max(open_files // 2, 16))
    if most < settings.max_connections:
        log.warning(
            "serving at most %d connections, half the descriptor limit (%d), not "
            "MAX_CONNECTIONS=%d: raise the limit (LimitNOFILE=, ulimit -n)",
            most,
            open_files,
            settings.max_connections,
        )
    return ConnectionLimits(
        max_connections=most,
        header_timeout_s=settings.header_timeout_s,
        write_timeout_s=settings.write_timeout_s,
        stalled_bytes=settings.stalled_answers_mb * MIB,
    )


class DrainingServer(uvicorn.Server):
    """uvicorn, with a first SIGTERM that drains (controller.draining) before the server
    closes its sockets; a second signal, or SIGINT, stops at once."""

    def __init__(self, config: uvicorn.Config, drain: Drain) -> None:
        super().__init__(config)
        self.drain = drain
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: asyncio.Future[None] | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM or self.drain.draining or self._loop is None:
            super().handle_exit(sig, frame)
            return
        self.drain.begin()  # from now on new requests are refused
        self._loop.call_soon_threadsafe(self._close_when_drained, sig, frame)

    def _close_when_drained(self, sig: int, frame: FrameType | None) -> None:
        async def close_when_drained() -> None:
            await self.drain.wait()
            super(DrainingServer, self).handle_exit(sig, frame)

        self._closing = asyncio.ensure_future(close_when_drained())


def serve(settings: Settings, app: FastAPI) -> None:
    """Serve ``app`` until stopped, within the server's own limits."""
    metrics = app.state.metrics
    guard = ConnectionGuard(
        connection_limits(settings, raise_open_files()),
        lambda reason: metrics.connections_dropped.labels(reason).inc(),
    )
    metrics.level("sandbox_connections_open", lambda: len(guard.open))
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=guarded_protocol(guard),
        # The service logs its own line per request (controller.api.middleware.RequestLog):
        # uvicorn's would carry query strings and no request id.
        access_log=False,
        log_config=None,
        log_level="info",
        server_header=False,
        timeout_keep_alive=settings.keep_alive_s,
        # The drain has waited for the requests in flight already: what is left is cut.
        timeout_graceful_shutdown=2,
    )
    DrainingServer(config, app.state.drain).run()
