"""A forward proxy's mechanics (HTTP and CONNECT), with the decision left to a gate.

One client connection carries exactly one request or one tunnel.  The gate resolves the
name itself and returns only addresses it checked, or refuses; the proxy connects to
nothing else, so a name that resolves to a forbidden address (or re-resolves to one
later: DNS rebinding) gets no further.  Plain HTTP responses are told to close, so a
client never sends a request for another host down an already-checked connection.

Serves the browser agent's proxy and the executions' egress proxy; each brings its own
gate (what may be reached) and, if it wants one, a meter (how much may flow).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol
from urllib.parse import SplitResult, urlsplit

log = logging.getLogger(__name__)

HEAD_LIMIT = 64 * 1024
HEAD_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 10.0
CHUNK = 64 * 1024
IDLE_TIMEOUT_S = 300.0
"""A connection with nothing to copy either way this long ends (no half-open leftovers)."""
# Per-hop headers of the client's request to the proxy: never sent upstream.
HOP_HEADERS = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"proxy-authorization", b"te", b"upgrade"}
)
REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    407: "Proxy Authentication Required",
    502: "Bad Gateway",
}


class Refused(Exception):
    """The destination is forbidden by the gate's policy (the message says why)."""


class Unauthorized(Exception):
    """The client did not prove who it is (a proxy that needs credentials: 407)."""


class Gate(Protocol):
    async def resolve(self, host: str, port: int) -> list[str]:
        """The checked addresses to try for ``host:port``; raise Refused if forbidden."""


class Meter:
    """Bytes through one client's connections, up to a cap shared by all of them."""

    def __init__(self, max_bytes: int | None = None) -> None:
        self.sent = 0
        self.received = 0
        self.max_bytes = max_bytes

    @property
    def remaining(self) -> int | None:
        """Bytes left under the cap (None: no cap)."""
        if self.max_bytes is None:
            return None
        return max(self.max_bytes - self.sent - self.received, 0)

    @property
    def exhausted(self) -> bool:
        return self.remaining == 0

    def count(self, n: int, *, upstream: bool) -> None:
        if upstream:
            self.sent += n
        else:
            self.received += n


GateFor = Callable[[bytes], Gate]
"""The gate of one request, from its header block (raises Unauthorized: a 407)."""


def header_value(header_block: bytes, name: bytes) -> str | None:
    """The first value of header ``name`` (lower-case) in a request's header block."""
    for line in header_block.split(b"\r\n"):
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == name:
            return value.strip().decode("latin-1")
    return None


def request_target(request_line: bytes) -> tuple[str, str, int, SplitResult | None]:
    """(method, host, port, the URL of a plain request) of a proxy request's first line.

    ValueError says what is wrong: only CONNECT and absolute ``http://`` requests are
    proxied (an https:// URL is a CONNECT's business).
    """
    parts = request_line.split(b" ")
    if len(parts) != 3:
        raise ValueError("malformed request line")
    method, target, _version = (p.decode("latin-1") for p in parts)
    if method == "CONNECT":
        host, port = split_authority(target, default_port=443)
        return method, host, port, None
    url = urlsplit(target)
    if url.scheme != "http" or not url.hostname:
        raise ValueError("only absolute http:// requests and CONNECT")
    return method, url.hostname, url.port or 80, url


async def serve(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    gate_for: GateFor,
    *,
    refused_header: str,
    meter: Meter | None = None,
) -> None:
    """Serve one client connection: read its request, ask its gate, connect, relay."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
        await _dispatch(head, reader, writer, gate_for, refused_header, meter)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
        pass
    except (ConnectionError, OSError) as exc:
        log.debug("proxy connection ended: %s", exc)
    finally:
        writer.close()


async def _dispatch(
    head: bytes,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    gate_for: GateFor,
    refused_header: str,
    meter: Meter | None,
) -> None:
    request_line, _, header_block = head.partition(b"\r\n")
    try:
        method, host, port, url = request_target(request_line)
    except ValueError as exc:
        await answer(writer, 400, str(exc))
        return
    try:
        gate = gate_for(header_block)
    except Unauthorized as exc:
        await answer(writer, 407, str(exc))
        return
    try:
        up_reader, up_writer = await _connect(gate, host, port)
    except Refused as exc:
        await answer(writer, 403, str(exc), refused_header=refused_header)
        return
    except (OSError, ValueError) as exc:
        await answer(writer, 502, str(exc))
        return
    try:
        if method == "CONNECT":
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            await writer.drain()
            await splice(reader, writer, up_reader, up_writer, meter)
            return
        assert url is not None
        request = _origin_request(method, url, header_block)
        if meter is not None:
            meter.count(len(request), upstream=True)
        up_writer.write(request)
        await up_writer.drain()
        await splice(
            reader,
            writer,
            up_reader,
            up_writer,
            meter,
            lambda: _forward_response_head(up_reader, writer, meter, refused_header),
        )
    finally:
        up_writer.close()


async def _connect(
    gate: Gate, host: str, port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    last: OSError | None = None
    for address in await gate.resolve(host, port):
        try:
            return await asyncio.wait_for(
                asyncio.open_connection(address, port, limit=HEAD_LIMIT), CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError) as exc:
            last = OSError(f"cannot connect to {host}:{port}: {exc}")
    raise last or OSError(f"no address for {host}")


def split_authority(authority: str, default_port: int) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port); ValueError on a bad port."""
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = authority.rpartition(":") if ":" in authority else (authority, "", "")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"bad port in {authority!r}")
    return host, int(port) if port else default_port


def _origin_request(method: str, url: SplitResult, header_block: bytes) -> bytes:
    target = (url.path or "/") + (f"?{url.query}" if url.query else "")
    lines = [f"{method} {target} HTTP/1.1".encode("latin-1")]
    # Host is the URL's, the one the gate checked: a client's own Host would otherwise
    # pick another site behind the same address (domain fronting).
    lines.append(f"Host: {url.netloc.rpartition('@')[2]}".encode("latin-1"))
    for line in header_block.split(b"\r\n"):
        name = line.partition(b":")[0].strip().lower()
        if line and name not in HOP_HEADERS and name != b"host":
            lines.append(line)
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def _forward_response_head(
    upstream: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    meter: Meter | None,
    refused_header: str,
) -> None:
    head = await asyncio.wait_for(upstream.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
    if meter is not None:
        meter.count(len(head), upstream=False)
    status_line, _, header_block = head.partition(b"\r\n")
    lines = [status_line]
    # The refusal header is the proxy's word: an origin that sends one is not believed.
    dropped = (b"connection", b"keep-alive", b"proxy-connection", refused_header.lower().encode())
    for line in header_block.split(b"\r\n"):
        name = line.partition(b":")[0].strip().lower()
        if line and name not in dropped:
            lines.append(line)
    lines += [b"Connection: close", b"Proxy-Connection: close"]
    writer.write(b"\r\n".join(lines) + b"\r\n\r\n")
    await writer.drain()


async def _pipe(
    source: asyncio.StreamReader,
    sink: asyncio.StreamWriter,
    meter: Meter | None,
    *,
    upstream: bool,
) -> None:
    with contextlib.suppress(ConnectionError, OSError, TimeoutError):
        while data := await asyncio.wait_for(source.read(CHUNK), IDLE_TIMEOUT_S):
            if meter is not None:
                data = data[: meter.remaining]
                if not data:
                    sink.close()  # the cap is reached: the connection ends, both ways
                    return
                meter.count(len(data), upstream=upstream)
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()


async def splice(
    client_r: asyncio.StreamReader,
    client_w: asyncio.StreamWriter,
    up_r: asyncio.StreamReader,
    up_w: asyncio.StreamWriter,
    meter: Meter | None,
    response_head: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Copy both ways until the upstream side is done, then end the client side too.

    ``response_head`` handles the upstream's first answer before the rest is copied; the
    client's upload already flows meanwhile (a request body is sent before its answer).
    """
    upload = asyncio.create_task(_pipe(client_r, up_w, meter, upstream=True))
    try:
        if response_head is not None:
            await response_head()
        await _pipe(up_r, client_w, meter, upstream=False)
    finally:
        upload.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await upload


async def answer(
    writer: asyncio.StreamWriter, status: int, message: str, *, refused_header: str | None = None
) -> None:
    """A short plain-text answer from the proxy itself (``refused_header`` marks a refusal)."""
    body = (message + "\n").encode()
    headers = [
        f"HTTP/1.1 {status} {REASONS[status]}",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if refused_header:
        headers.append(f"{refused_header}: " + message.replace("\r", " ").replace("\n", " "))
    if status == 407:
        headers.append("Proxy-Authenticate: Bearer")
    writer.write(("\r\n".join(headers) + "\r\n\r\n").encode("latin-1", "replace") + body)
    with contextlib.suppress(ConnectionError, OSError):
        await writer.drain()
