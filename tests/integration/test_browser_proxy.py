"""The agent's filtering proxy on its own, spoken to over real loopback sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from browser_agent.proxy import REFUSED_HEADER, FilteringProxy

from sandbox_common.egress_gate import EgressRules
from tests.pages import PageServer
from tests.support import public_web


@pytest.fixture
async def open_proxy(pages: PageServer) -> AsyncIterator[tuple[FilteringProxy, int]]:
    proxy = FilteringProxy(
        public_web(EgressRules(private_allowed=True, reserved_ports=frozenset({1})))
    )
    port = await proxy.start()
    yield proxy, port
    await proxy.stop()


async def exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data


async def test_http_is_forwarded_one_request_per_connection(
    open_proxy: tuple[FilteringProxy, int], pages: PageServer
) -> None:
    _, port = open_proxy
    first = (
        f"GET {pages.base}/form HTTP/1.1\r\nHost: 127.0.0.1\r\nProxy-Connection: keep-alive\r\n\r\n"
    )
    # A second request for another path rides on the same connection: it is never sent.
    second = f"GET {pages.base}/popup HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    data = await exchange(port, (first + second).encode())
    head = data.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.0 200") or head.startswith(b"http/1.1 200")
    assert b"connection: close" in head
    assert b"<title>Form</title>" in data
    assert pages.hits("/popup") == 0


async def test_connect_to_a_reserved_port_is_refused(
    open_proxy: tuple[FilteringProxy, int],
) -> None:
    proxy, port = open_proxy
    data = await exchange(port, b"CONNECT localhost:1 HTTP/1.1\r\nHost: localhost:1\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 403")
    assert REFUSED_HEADER.encode() in data
    assert proxy.refusals[-1].host == "localhost" and proxy.refusals[-1].port == 1


async def test_connect_tunnels_to_an_allowed_destination(
    open_proxy: tuple[FilteringProxy, int], pages: PageServer
) -> None:
    _, port = open_proxy
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"CONNECT 127.0.0.1:{pages.port} HTTP/1.1\r\n\r\n".encode())
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    writer.write(b"GET /device HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert b"<title>Device</title>" in data


async def test_default_policy_refuses_loopback_names(pages: PageServer) -> None:
    proxy = FilteringProxy(public_web(EgressRules()))
    port = await proxy.start()
    try:
        path = "/form?proxy-default"
        request = f"GET http://localhost:{pages.port}{path} HTTP/1.1\r\nHost: localhost\r\n\r\n"
        data = await exchange(port, request.encode())
        assert data.startswith(b"HTTP/1.1 403")
        assert pages.hits(path) == 0
    finally:
        await proxy.stop()


@pytest.mark.parametrize(
    "request_bytes",
    [b"NONSENSE\r\n\r\n", b"GET /relative HTTP/1.1\r\n\r\n", b"GET ftp://x/ HTTP/1.1\r\n\r\n"],
)
async def test_malformed_requests_are_400(
    open_proxy: tuple[FilteringProxy, int], request_bytes: bytes
) -> None:
    _, port = open_proxy
    assert (await exchange(port, request_bytes)).startswith(b"HTTP/1.1 400")
