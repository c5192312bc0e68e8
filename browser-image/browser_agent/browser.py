"""One session's browser: a Playwright Chromium, its context (the device) and its tabs.

The browser is launched before any session exists (so that creating one costs no
launch), with a desktop context and a blank tab already open, the common case.
``configure`` then binds it to the session's device.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from playwright.async_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    Request,
    async_playwright,
)

from browser_agent.devices import DESKTOP, UnknownDevice, accepted_names, resolve_device
from browser_agent.errors import AgentError, BadInput, BrowserExited, TabLimit, TabNotFound
from browser_agent.protocol import ConfigureResponse, Tab, TabList, Viewport
from browser_agent.proxy import url_target

log = logging.getLogger(__name__)

MAX_TABS = 32
MAX_ASKED = 4096
"""Destinations the session's pages asked for, remembered to tell their refusals from
Chromium's own (the oldest forgotten first)."""


@dataclass(frozen=True)
class BrowserOptions:
    executable: str
    proxy_port: int
    chromium_sandbox: bool


def chromium_args(proxy_port: int) -> list[str]:
    """Chromium's flags: everything through our proxy, no background traffic of its own."""
    return [
        "--headless=new",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-domain-reliability",
        "--disable-breakpad",
        "--no-first-run",
        "--no-default-browser-check",
        "--metrics-recording-only",
        # Forms would otherwise be described to Google's autofill service, through the
        # proxy: a file: URL sends its queries nowhere (a --disable-features here would
        # replace Playwright's own list, not add to it).
        "--autofill-server-url=file:///dev/null/",
        # An error page would otherwise reload itself later and interrupt the next call.
        "--disable-auto-reload",
        "--disable-dev-shm-usage",
        # Every request, loopback included (<-loopback> removes the implicit bypass), goes
        # through the filtering proxy; QUIC and non-proxied WebRTC UDP would go around it.
        f"--proxy-server=http://127.0.0.1:{proxy_port}",
        "--proxy-bypass-list=<-loopback>",
        "--disable-quic",
        "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
        "--webrtc-ip-handling-policy=disable_non_proxied_udp",
    ]


class SessionBrowser:
    """The tabs of one session; tab ids (``t1``, ``t2``, ...) are never reused."""

    def __init__(self, options: BrowserOptions) -> None:
        self.options = options
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._context: BrowserContext | None = None
        self._warm: BrowserContext | None = None
        self._tabs: dict[str, Page] = {}
        self._asked: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._ids = itertools.count(1)
        self._current: str | None = None
        self.device: str | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._shutting_down = False
        self.exited = False
        """Chromium went away under the agent (not by close()): nothing can work again."""
        self.on_exit: Callable[[], None] | None = None

    async def start(self) -> None:
        self._playwright = await async_playwright().start()
        self._browser = await self._playwright.chromium.launch(
            executable_path=self.options.executable,
            args=chromium_args(self.options.proxy_port),
            chromium_sandbox=self.options.chromium_sandbox,
            handle_sigint=False,
            handle_sigterm=False,
            handle_sighup=False,
        )
        self._browser.on("disconnected", self._disconnected)
        # The desktop context and its first tab are the slow part of a session's start
        # (a renderer process): made now, they are ready when a session asks for desktop.
        _, options = resolve_device(DESKTOP, self._playwright.devices)
        self._warm = await self._new_context(options)
        await self._warm.new_page()

    async def _new_context(self, options: dict[str, Any]) -> BrowserContext:
        assert self._browser is not None
        # No API call asks for a download, so none is kept: Chromium cancels each one as
        # it starts, and an endless attachment writes nothing anywhere.
        return await self._browser.new_context(**options, accept_downloads=False)

    def device_names(self) -> list[str]:
        assert self._playwright is not None
        return accepted_names(self._playwright.devices)

    @property
    def configured(self) -> bool:
        return self._context is not None

    def _disconnected(self, _: Browser) -> None:
        if self._shutting_down:
            return
        self.exited = True
        log.error("Chromium exited under the agent: the session cannot continue")
        if self.on_exit is not None:
            self.on_exit()

    def check_running(self) -> None:
        """Raise BrowserExited when Chromium is gone (an operation's failure then means
        that, not a closed tab)."""
        if self.exited or (self._browser is not None and not self._browser.is_connected()):
            self.exited = True
            raise BrowserExited(
                "the session's browser exited (crashed or killed); the session cannot continue"
            )

    def context(self) -> BrowserContext:
        self.check_running()
        if self._context is None:
            raise AgentError("the agent has no session yet (POST /session first)")
        return self._context

    async def configure(self, device: str) -> ConfigureResponse:
        if self._context is not None:
            raise BadInput("device", "already_configured", "this agent already has a session")
        assert self._playwright is not None and self._warm is not None
        try:
            name, options = resolve_device(device, self._playwright.devices)
        except UnknownDevice as exc:
            raise BadInput(
                "device", "unknown_device", f"{exc}; accepted: {', '.join(exc.accepted)}"
            ) from None
        if name == DESKTOP:
            context, self._warm = self._warm, None
        else:
            context = await self._new_context(options)
            warm, self._warm = self._warm, None
            asyncio.get_running_loop().create_task(warm.close())
        self._context = context
        self.device = name
        context.on("page", self._on_page)
        context.on("request", self._on_request)
        for page in context.pages:
            self._register(page)
        if not self._tabs:
            self._register(await context.new_page())
        viewport = options.get("viewport")
        return ConfigureResponse(
            device=name,
            viewport=Viewport(**viewport) if viewport else None,
            userAgent=str(options.get("user_agent", "")),
            isMobile=bool(options.get("is_mobile", False)),
            tabId=self.current_id(),
        )

    def _on_request(self, request: Request) -> None:
        target = url_target(request.url)
        if target is not None:
            self._asked[target] = None
            self._asked.move_to_end(target)
            if len(self._asked) > MAX_ASKED:
                self._asked.popitem(last=False)

    def asked(self, host: str, port: int) -> bool:
        """Whether a page of the session asked for ``host:port`` (as the proxy saw it)."""
        return (host.lower().strip("[]"), port) in self._asked

    def _on_page(self, page: Page) -> None:
        known = any(tab is page for tab in self._tabs.values())
        if not known and len(self._tabs) >= MAX_TABS:
            # A page that opens windows without end would exhaust the host's memory: past
            # the cap, what it opens is closed at once.
            closing = asyncio.get_running_loop().create_task(page.close())
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
            return
        self._register(page)

    def _register(self, page: Page) -> str:
        """Give a page (ours or a popup the site opened) a tab id; idempotent."""
        for tab_id, known in self._tabs.items():
            if known is page:
                return tab_id
        tab_id = f"t{next(self._ids)}"
        self._tabs[tab_id] = page
        self._current = tab_id
        page.on("close", lambda _: self._forget(tab_id))
        return tab_id

    def _forget(self, tab_id: str) -> None:
        self._tabs.pop(tab_id, None)
        if self._current == tab_id:
            self._current = next(reversed(self._tabs), None)

    def current_id(self) -> str:
        if self._current is None:
            raise TabNotFound("the session has no open tab; open one with POST .../tabs")
        return self._current

    def tab(self, tab_id: str | None) -> tuple[str, Page]:
        """The tab named by ``tab_id``, or the current one (the last opened still open)."""
        self.context()
        chosen = tab_id or self.current_id()
        page = self._tabs.get(chosen)
        if page is None or page.is_closed():
            raise TabNotFound(f"no open tab {chosen!r} in this session")
        return chosen, page

    async def open_tab(self) -> Tab:
        if len(self._tabs) >= MAX_TABS:
            raise TabLimit(f"a session has at most {MAX_TABS} open tabs; close one first")
        page = await self.context().new_page()
        tab_id = self._register(page)
        return Tab(tabId=tab_id, url=page.url, title="")

    async def close_tab(self, tab_id: str) -> None:
        _, page = self.tab(tab_id)
        await page.close()
        self._forget(tab_id)

    async def list_tabs(self) -> TabList:
        self.context()
        tabs = [
            Tab(tabId=tab_id, url=page.url, title=await _title(page))
            for tab_id, page in list(self._tabs.items())
        ]
        return TabList(tabs=tabs, current=self._current)

    async def close(self) -> None:
        self._shutting_down = True
        with contextlib.suppress(Exception):
            if self._browser is not None:
                await asyncio.wait_for(self._browser.close(), 5)
        with contextlib.suppress(Exception):
            if self._playwright is not None:
                await asyncio.wait_for(self._playwright.stop(), 5)


async def _title(page: Page) -> str:
    try:
        return await page.title()
    except Exception:  # a page in the middle of a navigation has no title to give yet
        return ""
