"""The client itself, on asyncio: requests, retries, executions, contexts and browsers.

Two timeouts, named apart: ``request_timeout_s`` bounds waiting for an answer to one
request (connect, and a call that runs nothing), and an execution's own ``timeout_ms``
(what the code may run, enforced by the service) is added to it for ``execute``.  A 429
or a 503 is tried again after the ``Retry-After`` the service sends (with back-off when
it sends none), up to ``retries`` times: neither means the request was carried out.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterable
from types import TracebackType
from typing import Any

import httpx

from sandbox_client.contexts import AsyncContext
from sandbox_client.errors import ApiError, SandboxClientError, TransportError, api_error
from sandbox_client.events import R, events_of
from sandbox_client.models import ExecutionResult, InputFile, Output, Result, Violation

DEFAULT_RUN_MS = 10_000
"""What the service runs code for when a request gives no timeout (its DEFAULT_TIMEOUT_MS)."""
RETRIED = frozenset({429, 503})
EVENT_STREAM = "text/event-stream"


def _setting(given: str | None, variable: str) -> str:
    value = given or os.environ.get(variable, "")
    if not value:
        raise SandboxClientError(
            f"no {variable.split('_')[-1].lower()}: pass it, or set {variable}"
        )
    return value


class AsyncClient:
    """One service (``SANDBOX_URL``) with one token (``SANDBOX_TOKEN``)."""

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        request_timeout_s: float = 30.0,
        retries: int = 4,
        max_retry_wait_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = _setting(base_url, "SANDBOX_URL").rstrip("/")
        self.request_timeout_s = request_timeout_s
        self.retries = retries
        self.max_retry_wait_s = max_retry_wait_s
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={
                "Authorization": f"Bearer {_setting(token, 'SANDBOX_TOKEN')}",
                "User-Agent": "sandbox-client/0.1",
            },
            timeout=request_timeout_s,
            transport=transport,
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        timeout_s: float | None = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        """One call, tried again on 429 and 503; ApiError for any other error answer."""
        timeout = timeout_s or self.request_timeout_s
        for attempt in range(self.retries + 1):
            try:
                response = await self._http.request(
                    method, path, json=json, params=params, timeout=timeout, content=content
                )
            except httpx.TimeoutException:
                raise TransportError(
                    f"{method} {path}: no answer within {timeout:.0f} s (the request timeout)"
                ) from None
            except httpx.TransportError as exc:
                raise TransportError(f"cannot reach {self.base_url}: {exc}") from None
            if response.status_code in RETRIED and attempt < self.retries:
                await asyncio.sleep(self._retry_wait(response, attempt))
                continue
            if response.status_code >= 400:
                try:
                    body = response.json()
                except ValueError:
                    body = None
                raise api_error(response.status_code, body, response.text[:200])
            return response
        raise AssertionError("unreachable")  # the last attempt returned or raised

    async def events(
        self, path: str, body: dict[str, Any], last: Callable[[dict[str, Any]], R], run_s: float
    ) -> AsyncIterator[Output | Result | Violation | R]:
        """POST ``body`` asking for a stream; its events as they come, ``last`` reading
        the final answer.  A 429 or 503 before the run begins is tried again, as by
        ``request``; any other error answer raises ApiError."""
        timeout = httpx.Timeout(self.request_timeout_s + run_s, connect=self.request_timeout_s)
        for attempt in range(self.retries + 1):
            try:
                async with self._http.stream(
                    "POST", path, json=body, headers={"Accept": EVENT_STREAM}, timeout=timeout
                ) as response:
                    if response.status_code in RETRIED and attempt < self.retries:
                        await response.aread()
                        await asyncio.sleep(self._retry_wait(response, attempt))
                        continue
                    if response.status_code >= 400:
                        text = (await response.aread()).decode(errors="replace")
                        try:
                            error_body = response.json()
                        except ValueError:
                            error_body = None
                        raise api_error(response.status_code, error_body, text[:200])
                    if not response.headers.get("content-type", "").startswith(EVENT_STREAM):
                        await response.aread()  # a service that does not stream
                        yield last(response.json())
                        return
                    async for event in events_of(response, last):
                        yield event
                    return
            except httpx.TimeoutException:
                raise TransportError(f"POST {path}: nothing within {timeout.read:.0f} s") from None
            except httpx.TransportError as exc:
                raise TransportError(f"cannot reach {self.base_url}: {exc}") from None
        raise AssertionError("unreachable")  # the last attempt returned or raised

    async def delete(self, path: str) -> None:
        """DELETE what ``path`` names; already gone (404, 410) is done."""
        try:
            await self.request("DELETE", path)
        except ApiError as exc:
            if exc.status not in (404, 410):
                raise

    def _retry_wait(self, response: httpx.Response, attempt: int) -> float:
        given = response.headers.get("retry-after", "")
        wait = float(given) if given.isdigit() else 0.5 * 2**attempt
        return min(wait, self.max_retry_wait_s)

    async def health(self) -> dict[str, Any]:
        """GET /health; a 503 (the sandbox unproven, or stopping) is an answer too."""
        try:
            response = await self.request("GET", "/health")
        except ApiError as exc:
            if exc.status != 503:
                raise
            raw = await self._http.get("/health")
            body: dict[str, Any] = raw.json()
            return body
        healthy: dict[str, Any] = response.json()
        return healthy

    async def execute(
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
        """Run ``code``; its failure is in the result, the platform's raises.

        ``network``: the names this run may reach, within the deployment's allowed ones
        (None: all of them; []: none).  ``figure_formats``: what matplotlib figures come
        back as in ``results`` (default ``image/png``; ``image/svg+xml`` too).
        """
        body = execute_body(
            code, files, stdin, timeout_ms, network, upload_url, upload_token, figure_formats
        )
        run_s = (timeout_ms or DEFAULT_RUN_MS) / 1000
        response = await self.request(
            "POST", "/execute", json=body, timeout_s=self.request_timeout_s + run_s
        )
        return ExecutionResult.from_json(response.json())

    async def stream(
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
    ) -> AsyncIterator[Output | Result | Violation | ExecutionResult]:
        """Run ``code`` as ``execute`` does, yielding what it prints (``Output``), shows
        (``Result``) and is refused (``Violation``) as it happens; the last item is the
        ``ExecutionResult``.  Leaving the loop early ends the run."""
        body = execute_body(
            code, files, stdin, timeout_ms, network, upload_url, upload_token, figure_formats
        )
        run_s = (timeout_ms or DEFAULT_RUN_MS) / 1000
        async for event in self.events("/execute", body, ExecutionResult.from_json, run_s):
            yield event

    def context(
        self,
        *,
        network: list[str] | None = None,
        idle_timeout_s: int | None = None,
        max_lifetime_s: int | None = None,
        files: Iterable[InputFile] = (),
        labels: dict[str, str] | None = None,
        context_id: str | None = None,
    ) -> AsyncContext:
        """A code context (an interpreter that keeps its state between calls), opened on
        entering ``async with`` and closed on leaving.  ``context_id``: use an open one
        instead (it is then left open on leaving)."""
        body: dict[str, Any] = {"labels": labels or {}, "files": [f.wire() for f in files]}
        if network is not None:
            body["network"] = {"allowedDomains": list(network)}
        if idle_timeout_s is not None:
            body["idleTimeoutS"] = idle_timeout_s
        if max_lifetime_s is not None:
            body["maxLifetimeS"] = max_lifetime_s
        return AsyncContext(self, body, context_id)

    def browser(
        self,
        device: str = "desktop",
        *,
        network: list[str] | None = None,
        idle_timeout_s: int | None = None,
        labels: dict[str, str] | None = None,
    ) -> AsyncBrowserSession:
        """A browser session, opened on entering ``async with`` and closed on leaving."""
        body: dict[str, Any] = {"device": device, "labels": labels or {}}
        if network is not None:
            body["network"] = {"allowedDomains": list(network)}
        if idle_timeout_s is not None:
            body["idleTimeoutS"] = idle_timeout_s
        return AsyncBrowserSession(self, body)


def execute_body(
    code: str,
    files: Iterable[InputFile],
    stdin: str | None,
    timeout_ms: int | None,
    network: list[str] | None,
    upload_url: str | None,
    upload_token: str | None,
    figure_formats: Iterable[str] | None,
) -> dict[str, Any]:
    """An /execute request's body, with only the fields given."""
    body: dict[str, Any] = {"code": code, "files": [f.wire() for f in files]}
    if stdin is not None:
        body["stdin"] = stdin
    if timeout_ms is not None:
        body["timeoutMs"] = timeout_ms
    if network is not None:
        body["network"] = {"allowedDomains": list(network)}
    if upload_url is not None:
        body["fileUploadUrl"] = upload_url
        if upload_token is not None:
            body["uploadToken"] = upload_token
    if figure_formats is not None:
        body["figureFormats"] = list(figure_formats)
    return body


class AsyncBrowserSession:
    """One browser session of the service: its tabs, navigation, content and actions."""

    def __init__(self, client: AsyncClient, create: dict[str, Any]) -> None:
        self._client = client
        self._create = create
        self.session_id = ""
        self.tab_id = ""
        """The tab calls go to when they name none: the first one."""

    async def open(self) -> AsyncBrowserSession:
        # Opening a cold browser can take seconds beyond the request timeout.
        timeout = self._client.request_timeout_s + 90
        created = (
            await self._client.request(
                "POST", "/browser/sessions", json=self._create, timeout_s=timeout
            )
        ).json()
        self.session_id = str(created["sessionId"])
        self.tab_id = str(created.get("tabId", "t1"))
        return self

    async def close(self) -> None:
        """Close the session; one already gone is closed (404 is done)."""
        if not self.session_id:
            return
        await self._client.delete(self._path(""))
        self.session_id = ""

    async def __aenter__(self) -> AsyncBrowserSession:
        return await self.open()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def _path(self, rest: str) -> str:
        if not self.session_id:
            raise SandboxClientError("the session is not open (use it in a with block)")
        return f"/browser/sessions/{self.session_id}{rest}"

    async def navigate(
        self,
        url: str,
        *,
        wait_until: str = "load",
        tab_id: str | None = None,
        timeout_ms: int | None = None,
    ) -> dict[str, Any]:
        """Load ``url``; the answer's ``status``, ``title``, ``url`` and ``violations``."""
        body: dict[str, Any] = {"url": url, "waitUntil": wait_until}
        if tab_id is not None:
            body["tabId"] = tab_id
        if timeout_ms is not None:
            body["timeoutMs"] = timeout_ms
        wait = self._client.request_timeout_s + (timeout_ms or 30_000) / 1000
        answer: dict[str, Any] = (
            await self._client.request("POST", self._path("/navigate"), json=body, timeout_s=wait)
        ).json()
        return answer

    async def content(self, tab_id: str | None = None) -> str:
        """The page's HTML."""
        params = {"tabId": tab_id} if tab_id else None
        return (await self._client.request("GET", self._path("/content"), params=params)).text

    async def screenshot(self, *, full_page: bool = False, tab_id: str | None = None) -> bytes:
        """A PNG of the tab."""
        params = {"fullPage": "true" if full_page else "false"}
        if tab_id:
            params["tabId"] = tab_id
        return (await self._client.request("GET", self._path("/screenshot"), params=params)).content

    async def action(self, action: str, **fields: Any) -> dict[str, Any]:
        """Any action of the API (click, fill, type, press, hover, select, check, scroll,
        wait_for), its fields as the API names them (``selector``, ``timeoutMs``, ...)."""
        wait = self._client.request_timeout_s + int(fields.get("timeoutMs") or 5000) / 1000
        body = {"action": action, **fields}
        answer: dict[str, Any] = (
            await self._client.request("POST", self._path("/action"), json=body, timeout_s=wait)
        ).json()
        return answer

    async def click(self, selector: str, **fields: Any) -> dict[str, Any]:
        return await self.action("click", selector=selector, **fields)

    async def fill(self, selector: str, value: str, **fields: Any) -> dict[str, Any]:
        return await self.action("fill", selector=selector, value=value, **fields)

    async def type(self, selector: str, text: str, **fields: Any) -> dict[str, Any]:
        return await self.action("type", selector=selector, text=text, **fields)

    async def press(self, selector: str, key: str, **fields: Any) -> dict[str, Any]:
        return await self.action("press", selector=selector, key=key, **fields)

    async def tabs(self) -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = (
            await self._client.request("GET", self._path("/tabs"))
        ).json()["tabs"]
        return listed

    async def new_tab(self) -> str:
        """Open a tab; its id."""
        return str((await self._client.request("POST", self._path("/tabs"))).json()["tabId"])

    async def close_tab(self, tab_id: str) -> None:
        await self._client.request("DELETE", self._path(f"/tabs/{tab_id}"))
