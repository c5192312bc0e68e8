"""The browser's filtering forward proxy: the only way out of the agent's browser.

Chromium is started with ``--proxy-server`` pointing here and ``<-loopback>`` in its
bypass list, so every request of every kind (documents, subresources, redirects, fetch,
XHR, WebSockets, and requests to loopback itself) arrives here.  The mechanics are
sandbox_common.forward_proxy's and the decision is sandbox_common.egress_gate's, the
same gate as the executions' egress proxy: it resolves the name itself and refuses
the request unless the session's policy allows the name and every address it leads
to.  This module keeps the refusals, so that a failed navigation can be explained and
every call can report what it had refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from browser_agent.protocol import NetworkViolation
from sandbox_common import forward_proxy
from sandbox_common.egress_gate import EgressGate
from sandbox_common.forward_proxy import HEAD_LIMIT, Refused

REFUSED_HEADER = "X-Browser-Agent-Refused"
MAX_REFUSALS = 64


DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


def url_target(url: str) -> tuple[str, int] | None:
    """(host, port) a URL leads to, as the proxy sees it asked for; None: not a network URL."""
    parts = urlsplit(url)
    port = DEFAULT_PORTS.get(parts.scheme)
    if port is None or not parts.hostname:
        return None
    try:
        return parts.hostname.lower(), parts.port or port
    except ValueError:
        return None


@dataclass(frozen=True)
class Refusal:
    """One destination the proxy refused, kept so the agent can explain a failed navigation."""

    host: str
    port: int
    reason: str
    at: float


class FilteringProxy:
    """Serves on loopback; each client connection carries exactly one request or tunnel.

    ``gate`` is replaced once, when the agent is bound to a session (before any page of
    it loads): each connection is decided by the gate of the moment it arrives.
    """

    def __init__(self, gate: EgressGate) -> None:
        self.gate = gate
        self.refusals: deque[Refusal] = deque(maxlen=MAX_REFUSALS)
        self.refused_total = 0
        self._server: asyncio.Server | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await asyncio.start_server(self._serve, host, port, limit=HEAD_LIMIT)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def start_unix(self, path: str) -> None:
        """Serve on a Unix socket instead: the way in for a Chromium in a network namespace
        of its own (its launcher forwards a loopback port there), reachable by nothing
        else on this host's network."""
        self._server = await asyncio.start_unix_server(self._serve, path, limit=HEAD_LIMIT)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def resolve(self, host: str, port: int) -> list[str]:
        """The checked addresses of ``host``; the refusal is kept when there are none."""
        try:
            return await self.gate.check(host, port)
        except Refused as exc:
            self.refused_total += 1
            self.refusals.append(Refusal(host, port, str(exc), time.monotonic()))
            raise Refused(f"{host}:{port} refused: {exc}") from None

    def refused_since(
        self, refused_before: int, asked: Callable[[str, int], bool]
    ) -> list[Refusal]:
        """What was refused after the count was ``refused_before`` (those still kept) of
        what the session's pages ``asked`` for: Chromium's own requests (its component
        updater, its account service) reach the proxy too, and are not the page's."""
        new = min(self.refused_total - refused_before, len(self.refusals))
        recent = list(self.refusals)[len(self.refusals) - new :] if new > 0 else []
        return [r for r in recent if asked(r.host, r.port)]

    def violations_since(
        self, refused_before: int, asked: Callable[[str, int], bool]
    ) -> list[NetworkViolation]:
        return [
            NetworkViolation(target=f"{r.host}:{r.port}", detail=r.reason)
            for r in self.refused_since(refused_before, asked)
        ]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await forward_proxy.serve(reader, writer, lambda _head: self, refused_header=REFUSED_HEADER)
