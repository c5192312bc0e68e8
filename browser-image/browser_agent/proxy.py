"""A filtering forward proxy (HTTP and CONNECT): the only way out of the agent's browser.

Chromium is started with ``--proxy-server`` pointing here and ``<-loopback>`` in its
bypass list, so every request of every kind (documents, subresources, redirects, fetch,
XHR, WebSockets, and requests to loopback itself) arrives here.  The proxy resolves
the name itself, refuses the request if any address is forbidden (netpolicy), and
connects only to an address it checked: the browser never resolves or connects itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

from browser_agent.netpolicy import DestinationPolicy, refusal
from sandbox_common import addresses

log = logging.getLogger(__name__)

HEAD_LIMIT = 64 * 1024
HEAD_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 10.0
CHUNK = 64 * 1024
REFUSED_HEADER = "X-Browser-Agent-Refused"
# Per-hop headers of the client's request to the proxy: never sent upstream.
HOP_HEADERS = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"proxy-authorization", b"te", b"upgrade"}
)


@dataclass(frozen=True)
class Refusal:
    """One destination the proxy refused, kept so the agent can explain a failed navigation."""

    host: str
    port: int
    reason: str
    at: float


class Refused(Exception):
    """The destination is forbidden by the policy."""


class FilteringProxy:
    """Serves on loopback; each client connection carries exactly one request or tunnel."""

    def __init__(self, policy: DestinationPolicy) -> None:
        self.policy = policy
        self.refusals: deque[Refusal] = deque(maxlen=64)
        self.refused_total = 0
        self._server: asyncio.Server | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await asyncio.start_server(self._serve, host, port, limit=HEAD_LIMIT)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def resolve(self, host: str, port: int) -> list[str]:
        """Every address of ``host``; refuse them all if any one of them is forbidden."""
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise OSError(f"cannot resolve {host}: {exc}") from None
        found = list(dict.fromkeys(str(info[4][0]) for info in infos))
        for address in found:
            reason = refusal(addresses.parse(address), port, self.policy)
            if reason is not None:
                self.refused_total += 1
                self.refusals.append(Refusal(host, port, reason, time.monotonic()))
                raise Refused(f"{host}:{port} refused: {reason}")
        return found

    async def _connect(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        last: OSError | None = None
        for address in await self.resolve(host, port):
            try:
                return await asyncio.wait_for(
                    asyncio.open_connection(address, port, limit=HEAD_LIMIT), CONNECT_TIMEOUT_S
                )
            except (OSError, TimeoutError) as exc:
                last = OSError(f"cannot connect to {host}:{port}: {exc}")
        raise last or OSError(f"no address for {host}")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
            await self._dispatch(head, reader, writer)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        except (ConnectionError, OSError) as exc:
            log.debug("proxy connection ended: %s", exc)
        finally:
            writer.close()

    async def _dispatch(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        request_line, _, header_block = head.partition(b"\r\n")
        parts = request_line.split(b" ")
        if len(parts) != 3:
            await _answer(writer, 400, "malformed request line")
            return
        method, target, _version = (p.decode("latin-1") for p in parts)
        if method == "CONNECT":
            host, port = _split_authority(target, default_port=443)
        else:
            url = urlsplit(target)
            if url.scheme != "http" or not url.hostname:
                await _answer(writer, 400, "only absolute http:// requests and CONNECT")
                return
            host, port = url.hostname, url.port or 80
        try:
            up_reader, up_writer = await self._connect(host, port)
        except Refused as exc:
            await _answer(writer, 403, str(exc), refused=True)
            return
        except (OSError, ValueError) as exc:
            await _answer(writer, 502, str(exc))
            return
        try:
            if method == "CONNECT":
                writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                await writer.drain()
            else:
                up_writer.write(_origin_request(method, url.path, url.query, header_block))
                await up_writer.drain()
                # One request per connection: the response is told to close, so the browser
                # never sends a request for another host down this already-checked tunnel.
                await _forward_response_head(up_reader, writer)
            await _splice(reader, writer, up_reader, up_writer)
        finally:
            up_writer.close()


def _split_authority(authority: str, default_port: int) -> tuple[str, int]:
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = authority.rpartition(":") if ":" in authority else (authority, "", "")
    if port and not port.isdigit():
        raise ValueError(f"bad port in {authority!r}")
    return host, int(port) if port else default_port


def _origin_request(method: str, path: str, query: str, header_block: bytes) -> bytes:
    target = (path or "/") + (f"?{query}" if query else "")
    lines = [f"{method} {target} HTTP/1.1".encode("latin-1")]
    for line in header_block.split(b"\r\n"):
        name = line.partition(b":")[0].strip().lower()
        if line and name not in HOP_HEADERS:
            lines.append(line)
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def _forward_response_head(
    upstream: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    head = await asyncio.wait_for(upstream.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
    status_line, _, header_block = head.partition(b"\r\n")
    lines = [status_line]
    for line in header_block.split(b"\r\n"):
        name = line.partition(b":")[0].strip().lower()
        if line and name not in (b"connection", b"keep-alive", b"proxy-connection"):
            lines.append(line)
    lines += [b"Connection: close", b"Proxy-Connection: close"]
    writer.write(b"\r\n".join(lines) + b"\r\n\r\n")
    await writer.drain()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await source.read(CHUNK):
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()


async def _splice(
    client_r: asyncio.StreamReader,
    client_w: asyncio.StreamWriter,
    up_r: asyncio.StreamReader,
    up_w: asyncio.StreamWriter,
) -> None:
    """Copy both ways until the upstream side is done, then end the client side too."""
    upload = asyncio.create_task(_pipe(client_r, up_w))
    try:
        await _pipe(up_r, client_w)
    finally:
        upload.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await upload


async def _answer(
    writer: asyncio.StreamWriter, status: int, message: str, *, refused: bool = False
) -> None:
    reason = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway"}[status]
    body = (message + "\n").encode()
    headers = [
        f"HTTP/1.1 {status} {reason}",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if refused:
        headers.append(f"{REFUSED_HEADER}: " + message.replace("\r", " ").replace("\n", " "))
    writer.write(("\r\n".join(headers) + "\r\n\r\n").encode("latin-1", "replace") + body)
    with contextlib.suppress(ConnectionError, OSError):
        await writer.drain()
