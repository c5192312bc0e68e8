"""The synchronous client: ``AsyncClient`` run on an event loop of its own, in a thread.

One implementation (sandbox_client.aio); each call here hands its coroutine to that
loop and waits.  The loop lives in a thread so that the client also works where a loop
is already running (a notebook), and its connections are kept between calls.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator
from types import TracebackType
from typing import Any, TypeVar

from sandbox_client.aio import AsyncBrowserSession, AsyncClient
from sandbox_client.contexts import AsyncContext, AsyncContextFiles
from sandbox_client.models import (
    ContextResult,
    ExecutionResult,
    InputFile,
    Output,
    Result,
    Violation,
    WorkspaceFile,
)

T = TypeVar("T")


class _Loop:
    """An event loop running in a daemon thread until closed."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="sandbox-client", daemon=True
        )
        self._thread.start()

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result()

    def iterate(self, events: AsyncIterator[T]) -> Iterator[T]:
        """The items of ``events``, each waited for; leaving early closes it (on the loop)."""
        try:
            while True:
                try:
                    yield self.run(_next(events))
                except StopAsyncIteration:
                    return
        finally:
            if not self.loop.is_closed():  # left early: the stream is closed (its run ends)
                self.run(_close(events))

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class Client:
    """The same arguments as AsyncClient; use it in a ``with`` block, or call close()."""

    def __init__(
        self, base_url: str | None = None, token: str | None = None, **options: Any
    ) -> None:
        self._loop = _Loop()
        try:
            self._async = self._loop.run(_make(base_url, token, options))
        except BaseException:
            self._loop.close()
            raise

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._loop.run(self._async.aclose())
        self._loop.close()

    def health(self) -> dict[str, Any]:
        return self._loop.run(self._async.health())

    def execute(
        self,
        code: str,
        *,
        files: Iterable[InputFile] = (),
        stdin: str | None = None,
        timeout_ms: int | None = None,
        network: list[str] | None = None,
        upload_url: str | None = None,
        upload_token: str | None = None,
        figure_formats: Iterable[str] | None = None,
    ) -> ExecutionResult:
        """See AsyncClient.execute."""
        return self._loop.run(
            self._async.execute(
                code,
                files=list(files),
                stdin=stdin,
                timeout_ms=timeout_ms,
                network=network,
                upload_url=upload_url,
                upload_token=upload_token,
                figure_formats=figure_formats,
            )
        )

    def stream(
        self, code: str, **options: Any
    ) -> Iterator[Output | Result | Violation | ExecutionResult]:
        """See AsyncClient.stream: the same options, its events as they come."""
        return self._loop.iterate(self._async.stream(code, **options))

    def context(
        self,
        *,
        network: list[str] | None = None,
        idle_timeout_s: int | None = None,
        max_lifetime_s: int | None = None,
        files: Iterable[InputFile] = (),
        labels: dict[str, str] | None = None,
        context_id: str | None = None,
    ) -> Context:
        """See AsyncClient.context: opened on entering ``with``, closed on leaving."""
        context = self._async.context(
            network=network,
            idle_timeout_s=idle_timeout_s,
            max_lifetime_s=max_lifetime_s,
            files=list(files),
            labels=labels,
            context_id=context_id,
        )
        return Context(self._loop, context)

    def browser(
        self,
        device: str = "desktop",
        *,
        network: list[str] | None = None,
        idle_timeout_s: int | None = None,
        labels: dict[str, str] | None = None,
    ) -> BrowserSession:
        """A browser session, opened on entering ``with`` and closed on leaving."""
        session = self._async.browser(
            device, network=network, idle_timeout_s=idle_timeout_s, labels=labels
        )
        return BrowserSession(self._loop, session)


async def _make(base_url: str | None, token: str | None, options: dict[str, Any]) -> AsyncClient:
    return AsyncClient(base_url, token, **options)  # its connections belong to this loop


async def _next(events: AsyncIterator[T]) -> T:
    return await anext(events)


async def _close(events: AsyncIterator[T]) -> None:
    close = getattr(events, "aclose", None)
    if close is not None:
        await close()


class BrowserSession:
    """AsyncBrowserSession, waited for."""

    def __init__(self, loop: _Loop, session: AsyncBrowserSession) -> None:
        self._loop = loop
        self._session = session

    @property
    def session_id(self) -> str:
        return self._session.session_id

    def __enter__(self) -> BrowserSession:
        self._loop.run(self._session.open())
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._loop.run(self._session.close())

    def navigate(self, url: str, **options: Any) -> dict[str, Any]:
        return self._loop.run(self._session.navigate(url, **options))

    def content(self, tab_id: str | None = None) -> str:
        return self._loop.run(self._session.content(tab_id))

    def screenshot(self, *, full_page: bool = False, tab_id: str | None = None) -> bytes:
        return self._loop.run(self._session.screenshot(full_page=full_page, tab_id=tab_id))

    def action(self, action: str, **fields: Any) -> dict[str, Any]:
        return self._loop.run(self._session.action(action, **fields))

    def click(self, selector: str, **fields: Any) -> dict[str, Any]:
        return self._loop.run(self._session.click(selector, **fields))

    def fill(self, selector: str, value: str, **fields: Any) -> dict[str, Any]:
        return self._loop.run(self._session.fill(selector, value, **fields))

    def type(self, selector: str, text: str, **fields: Any) -> dict[str, Any]:
        return self._loop.run(self._session.type(selector, text, **fields))

    def press(self, selector: str, key: str, **fields: Any) -> dict[str, Any]:
        return self._loop.run(self._session.press(selector, key, **fields))

    def tabs(self) -> list[dict[str, Any]]:
        return self._loop.run(self._session.tabs())

    def new_tab(self) -> str:
        return self._loop.run(self._session.new_tab())

    def close_tab(self, tab_id: str) -> None:
        self._loop.run(self._session.close_tab(tab_id))


class Context:
    """AsyncContext, waited for."""

    def __init__(self, loop: _Loop, context: AsyncContext) -> None:
        self._loop = loop
        self._context = context
        self.files = ContextFiles(loop, context.files)

    @property
    def context_id(self) -> str:
        return self._context.context_id

    def open(self) -> Context:
        self._loop.run(self._context.open())
        return self

    def __enter__(self) -> Context:
        return self.open()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._loop.run(self._context.close())

    def run(self, code: str, **options: Any) -> ContextResult:
        """See AsyncContext.run (``stdin``, ``timeout_ms``, ``figure_formats``)."""
        return self._loop.run(self._context.run(code, **options))

    def stream(
        self, code: str, **options: Any
    ) -> Iterator[Output | Result | Violation | ContextResult]:
        """See AsyncContext.stream: its events as they come."""
        return self._loop.iterate(self._context.stream(code, **options))

    def restart(self) -> None:
        self._loop.run(self._context.restart())

    def info(self) -> dict[str, Any]:
        return self._loop.run(self._context.info())


class ContextFiles:
    """AsyncContextFiles, waited for."""

    def __init__(self, loop: _Loop, files: AsyncContextFiles) -> None:
        self._loop = loop
        self._files = files

    def list(self) -> list[WorkspaceFile]:
        return self._loop.run(self._files.list())

    def read(self, path: str) -> bytes:
        return self._loop.run(self._files.read(path))

    def write(self, path: str, content: bytes | str) -> None:
        self._loop.run(self._files.write(path, content))

    def delete(self, path: str) -> None:
        self._loop.run(self._files.delete(path))
