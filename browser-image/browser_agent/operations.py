"""What a session does with a tab: navigate, read, screenshot, and the page actions.

Playwright's errors are turned into the agent's errors here: a selector that matches
nothing in time is a 409, a refused destination a 403, an unloadable page a 502.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Frame, Locator, Page, Response
from playwright.async_api import TimeoutError as PlaywrightTimeout

from browser_agent.browser import SessionBrowser
from browser_agent.errors import (
    ActionFailed,
    AgentError,
    BadInput,
    ElementTimeout,
    Forbidden,
    NavigationFailed,
    NavigationTimeout,
    TabNotFound,
)
from browser_agent.protocol import (
    DEFAULT_ACTION_TIMEOUT_MS,
    DEFAULT_NAVIGATION_TIMEOUT_MS,
    Action,
    ActionResponse,
    CheckAction,
    ClickAction,
    FillAction,
    HoverAction,
    NavigateRequest,
    NavigateResponse,
    PressAction,
    ScrollAction,
    SelectAction,
    TypeAction,
    WaitForAction,
    WaitUntil,
)
from browser_agent.proxy import REFUSED_HEADER, FilteringProxy, url_target
from browser_agent.urlpolicy import UrlRefused, check_navigation_url

ERROR_PAGE_PREFIX = "chrome-error://"
DOWNLOAD_MARKER = "Download is starting"
"""Playwright's error for a navigation that turned into a download (which is refused)."""
ERROR_PAGE_WAIT_S = 1.0
CLOSED_MARKERS = ("has been closed", "Target closed", "Target page, context or browser")


def first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:500] if text else type(error).__name__


def _closed(error: Exception) -> bool:
    return any(marker in str(error) for marker in CLOSED_MARKERS)


async def navigate(
    browser: SessionBrowser, proxy: FilteringProxy, request: NavigateRequest
) -> NavigateResponse:
    try:
        url = check_navigation_url(request.url)
    except UrlRefused as exc:
        raise BadInput("url", exc.rule, exc.message) from None
    tab_id, page = browser.tab(request.tabId)
    timeout = request.timeoutMs or DEFAULT_NAVIGATION_TIMEOUT_MS
    refused_before = proxy.refused_total
    started = time.monotonic()
    error_page = asyncio.Event()

    def on_navigated(frame: Frame) -> None:
        if frame == page.main_frame and frame.url.startswith(ERROR_PAGE_PREFIX):
            error_page.set()

    page.on("framenavigated", on_navigated)
    try:
        response = await _goto(page, url, request.waitUntil, timeout)
    except PlaywrightTimeout:
        raise NavigationTimeout(
            f"{url} did not reach {request.waitUntil!r} within {timeout} ms (timeoutMs)"
        ) from None
    except PlaywrightError as exc:
        browser.check_running()
        if _closed(exc):
            raise TabNotFound(f"tab {tab_id!r} was closed") from None
        if "net::ERR_" in str(exc) and "net::ERR_ABORTED" not in str(exc):
            # Chromium commits its error page just after the navigation failed; answering
            # before that would let the commit interrupt the caller's next navigation.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(error_page.wait(), ERROR_PAGE_WAIT_S)
        _raise_if_refused(browser, proxy, url, refused_before, started)
        if DOWNLOAD_MARKER in str(exc):
            raise NavigationFailed(
                f"{url} is a download, not a page: browser sessions keep no downloads "
                "(Chromium cancelled it as it started)"
            ) from None
        raise NavigationFailed(f"cannot load {url}: {first_line(exc)}") from None
    finally:
        page.remove_listener("framenavigated", on_navigated)
    if response is not None and response.url.startswith("http:"):
        # The proxy answers a refused plain-HTTP request itself, with this header (and
        # strips it from what origins send); over HTTPS the header would be the origin's
        # own, since a refused tunnel fails the navigation instead.  The provisional
        # headers are at hand (all_headers would cost a driver round trip).
        refused = response.headers.get(REFUSED_HEADER.lower())
        if refused:
            raise Forbidden(f"navigation refused by the network policy: {refused}")
    return NavigateResponse(
        tabId=tab_id,
        url=page.url,
        status=response.status if response is not None else None,
        title=await page.title(),
        violations=proxy.violations_since(refused_before, browser.asked),
    )


async def _goto(page: Page, url: str, wait_until: WaitUntil, wait_ms: int) -> Response | None:
    """``page.goto``, tried once more if a navigation left over from before interrupted it."""
    try:
        return await page.goto(url, wait_until=wait_until, timeout=wait_ms)
    except PlaywrightError as exc:
        if "interrupted by another navigation" not in str(exc):
            raise
    return await page.goto(url, wait_until=wait_until, timeout=wait_ms)


def _raise_if_refused(
    browser: SessionBrowser, proxy: FilteringProxy, url: str, refused_before: int, started: float
) -> None:
    """A failed navigation during which the proxy refused a destination the session asked
    for: say so (403), naming the navigation's own destination when it was refused (the
    previous page's favicon or a script of another tab may have been refused meanwhile),
    else the latest (a redirect's)."""
    recent = [r for r in proxy.refused_since(refused_before, browser.asked) if r.at >= started]
    if not recent:
        return
    target = url_target(url)
    refusal = next((r for r in recent if (r.host.lower().strip("[]"), r.port) == target), None)
    refusal = refusal or recent[-1]
    raise Forbidden(
        f"navigation refused by the network policy: {refusal.host}:{refusal.port}: {refusal.reason}"
    )


async def content(browser: SessionBrowser, tab_id: str | None) -> str:
    tab_id, page = browser.tab(tab_id)
    try:
        return await page.content()
    except PlaywrightError as exc:
        browser.check_running()
        raise _page_error(exc, tab_id) from None


async def screenshot(browser: SessionBrowser, tab_id: str | None, full_page: bool) -> bytes:
    tab_id, page = browser.tab(tab_id)
    try:
        return await page.screenshot(type="png", full_page=full_page, timeout=30_000)
    except PlaywrightError as exc:
        browser.check_running()
        raise _page_error(exc, tab_id) from None


def _page_error(exc: PlaywrightError, tab_id: str) -> AgentError:
    if _closed(exc):
        return TabNotFound(f"tab {tab_id!r} was closed")
    return AgentError(first_line(exc))


async def act(browser: SessionBrowser, proxy: FilteringProxy, action: Action) -> ActionResponse:
    tab_id, page = browser.tab(action.tabId)
    refused_before = proxy.refused_total
    timeout = action.timeoutMs or DEFAULT_ACTION_TIMEOUT_MS
    selector = getattr(action, "selector", None)
    try:
        result = await _perform(page, action, wait_ms=timeout)
    except PlaywrightTimeout:
        what = f"no element matching {selector!r} was ready" if selector else "the page was not"
        raise ElementTimeout(
            f"{action.action}: {what} within {timeout} ms (timeoutMs)",
            [{"field": "selector" if selector else "state", "rule": "timeout", "message": what}],
        ) from None
    except PlaywrightError as exc:
        browser.check_running()
        raise _action_error(exc, action, tab_id) from None
    return ActionResponse(
        tabId=tab_id,
        action=action.action,
        url=page.url,
        result=result,
        violations=proxy.violations_since(refused_before, browser.asked),
    )


def _action_error(exc: PlaywrightError, action: Action, tab_id: str) -> AgentError:
    message = first_line(exc)
    if _closed(exc):
        return TabNotFound(f"tab {tab_id!r} was closed")
    if "Unknown key" in message:
        return BadInput("key", "unknown_key", message)
    lowered = message.lower()
    if "selector" in lowered and any(w in lowered for w in ("valid", "parsing", "unexpected")):
        return BadInput("selector", "invalid_selector", message)
    return ActionFailed(f"{action.action}: {message}")


async def _perform(page: Page, action: Action, wait_ms: int) -> dict[str, Any] | None:
    if isinstance(action, ScrollAction) and action.selector is None:
        position = await page.evaluate(
            "([x, y]) => { window.scrollBy(x, y); return [window.scrollX, window.scrollY]; }",
            [action.deltaX, action.deltaY],
        )
        return {"scrollX": position[0], "scrollY": position[1]}
    if isinstance(action, WaitForAction) and action.selector is None:
        state = action.state if action.state in ("load", "domcontentloaded") else "networkidle"
        await page.wait_for_load_state(state, timeout=wait_ms)
        return None
    target: Locator = page.locator(str(getattr(action, "selector", ""))).first
    if isinstance(action, ClickAction):
        await target.click(button=action.button, click_count=action.clickCount, timeout=wait_ms)
    elif isinstance(action, FillAction):
        await target.fill(action.value, timeout=wait_ms)
    elif isinstance(action, TypeAction):
        await target.press_sequentially(action.text, delay=action.delayMs, timeout=wait_ms)
    elif isinstance(action, PressAction):
        await target.press(action.key, timeout=wait_ms)
    elif isinstance(action, HoverAction):
        await target.hover(timeout=wait_ms)
    elif isinstance(action, SelectAction):
        return {"selected": await target.select_option(action.values, timeout=wait_ms)}
    elif isinstance(action, CheckAction):
        await target.set_checked(action.checked, timeout=wait_ms)
        return {"checked": await target.is_checked(timeout=wait_ms)}
    elif isinstance(action, ScrollAction):
        await target.scroll_into_view_if_needed(timeout=wait_ms)
    elif isinstance(action, WaitForAction):
        await target.wait_for(state=action.state or "visible", timeout=wait_ms)  # type: ignore[arg-type]
    return None
