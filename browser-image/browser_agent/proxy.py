"""The browser's filtering forward proxy: the only way out of the agent's browser.

Chromium is started with ``--proxy-server`` pointing here and ``<-loopback>`` in its
bypass list, so every request of every kind (documents, subresources, redirects, fetch,
XHR, WebSockets, and requests to loopback itself) arrives here.  The mechanics are
sandbox_common.forward_proxy's; this module is the gate: it resolves the name itself,
refuses the request if any address is forbidden (netpolicy), and keeps the refusals so
that a failed navigation can be explained.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections import deque
from dataclasses import dataclass

from browser_agent.netpolicy import DestinationPolicy, refusal
from sandbox_common import addresses, forward_proxy
from sandbox_common.forward_proxy import HEAD_LIMIT, Refused

REFUSED_HEADER = "X-Browser-Agent-Refused"


@dataclass(frozen=True)
class Refusal:
    """One destination the proxy refused, kept so the agent can explain a failed navigation."""

    host: str
    port: int
    reason: str
    at: float


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

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await forward_proxy.serve(reader, writer, lambda _head: self, refused_header=REFUSED_HEADER)
