"""The network policy enforced on everything a page does, not only on navigations.

The agent's browser and proxy are driven in-process here, so that a page can run
scripts of the test's choosing (the public API has no script evaluation): WebSockets,
fetch, images and names that resolve to loopback all go through the proxy, and a
refused destination never sees a connection.  Each case has its positive control: the
same request succeeds when the policy allows it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
from browser_agent.browser import BrowserOptions, SessionBrowser
from browser_agent.proxy import FilteringProxy
from playwright.async_api import Page

from sandbox_common.domains import DomainPolicy, parse_patterns
from sandbox_common.egress_gate import EgressGate, EgressRules
from tests.pages import PageServer
from tests.support import public_web

pytestmark = pytest.mark.timeout(90)

OPEN_WEBSOCKET = """url => new Promise(done => {
  const ws = new WebSocket(url);
  ws.onopen = () => { done('open'); ws.close(); };
  ws.onerror = () => done('error');
})"""
# no-cors: the page is about:blank and the answer is not the point; whether the server
# was reached is (a refused plain-HTTP request gets the proxy's own 403 instead).
FETCH = "url => fetch(url, {mode: 'no-cors'}).then(() => 'answered', () => 'error')"
IMAGE = """url => new Promise(done => {
  const img = new Image(); img.onload = () => done('loaded'); img.onerror = () => done('error');
  img.src = url;
})"""


@pytest.fixture
async def browser() -> AsyncIterator[tuple[SessionBrowser, FilteringProxy, Page]]:
    proxy = FilteringProxy(public_web(EgressRules()))
    port = await proxy.start()
    session = SessionBrowser(
        # As root Chromium refuses its sandbox; the controller never runs agents as root.
        BrowserOptions("/usr/bin/chromium", port, chromium_sandbox=os.geteuid() != 0)
    )
    await session.start()
    await session.configure("desktop")
    _, page = session.tab(None)
    try:
        yield session, proxy, page
    finally:
        await session.close()
        await proxy.stop()


async def test_websockets_fetch_and_images_to_loopback_are_refused(
    browser: tuple[SessionBrowser, FilteringProxy, Page], pages: PageServer
) -> None:
    _, proxy, page = browser
    await page.set_content("<title>scripted</title>")
    ws = f"ws://127.0.0.1:{pages.port}/ws?case=refused"
    assert await page.evaluate(OPEN_WEBSOCKET, ws) == "error"
    await page.evaluate(FETCH, f"{pages.base}/form?case=refused")
    assert await page.evaluate(IMAGE, f"{pages.base}/download?case=refused") == "error"
    await page.evaluate(FETCH, f"http://localhost:{pages.port}/form?case=name")
    assert pages.hits("/ws") == pages.hits("/form") == pages.hits("/download") == 0
    assert {r.host for r in proxy.refusals} == {"127.0.0.1", "localhost"}

    # The positive control: the same requests go through once private networks are allowed.
    proxy.gate = public_web(EgressRules(private_allowed=True))
    assert await page.evaluate(OPEN_WEBSOCKET, f"ws://127.0.0.1:{pages.port}/ws?ok") == "open"
    assert await page.evaluate(FETCH, f"{pages.base}/form?ok") == "answered"
    assert pages.hits("/ws?ok") == 1 and pages.hits("/form?ok") == 1


async def test_reserved_ports_stay_refused_when_private_networks_are_allowed(
    browser: tuple[SessionBrowser, FilteringProxy, Page], pages: PageServer
) -> None:
    _, proxy, page = browser
    proxy.gate = public_web(
        EgressRules(private_allowed=True, reserved_ports=frozenset({pages.port}))
    )
    await page.set_content("<title>scripted</title>")
    assert await page.evaluate(OPEN_WEBSOCKET, f"ws://[::1]:{pages.port}/ws?reserved") == "error"
    await page.evaluate(FETCH, f"{pages.base}/form?reserved")
    assert pages.hits("/ws?reserved") == pages.hits("/form?reserved") == 0


async def test_chromiums_own_refused_requests_are_not_the_pages_violations(
    browser: tuple[SessionBrowser, FilteringProxy, Page], pages: PageServer
) -> None:
    """Chromium asks for things of its own through the proxy (its component updater, its
    account service): refused too, but not reported as what the page did."""
    session, proxy, page = browser
    policy = DomainPolicy(parse_patterns(["files.test"]), (), frozenset({pages.port}))
    proxy.gate = EgressGate(policy, EgressRules({"files.test": "127.0.0.1"}))
    before = proxy.refused_total
    # What Chromium's own services do: a request to the proxy that no page made.
    reader, writer = await asyncio.open_connection("127.0.0.1", session.options.proxy_port)
    writer.write(
        b"CONNECT accounts.google.com:443 HTTP/1.1\r\nHost: accounts.google.com:443\r\n\r\n"
    )
    await writer.drain()
    assert (await reader.readline()).startswith(b"HTTP/1.1 403")
    writer.close()
    # What the page does: an image from a name it may not reach.
    other = f"http://other.test:{pages.port}/download?own"
    await page.goto(f"http://files.test:{pages.port}/image?src={other}")
    # Both refused (and maybe a request of Chromium's own meanwhile, the very thing this
    # is about); only the page's reported.
    refused = {f"{r.host}:{r.port}" for r in proxy.refusals}
    assert {"accounts.google.com:443", f"other.test:{pages.port}"} <= refused
    reported = proxy.violations_since(before, session.asked)
    assert [v.target for v in reported] == [f"other.test:{pages.port}"]
