"""Code contexts on asyncio: an interpreter that keeps its state, and its workspace's files.

async with client.context() as ctx:
    await ctx.run("import pandas as pd; df = pd.read_csv('data.csv')")
    print((await ctx.run("print(df.shape)")).stdout)
    await ctx.files.write("out/notes.txt", b"...")
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sandbox_client.errors import SandboxClientError
from sandbox_client.models import ContextResult, Output, Result, Violation, WorkspaceFile

if TYPE_CHECKING:
    from sandbox_client.aio import AsyncClient

DEFAULT_RUN_MS = 10_000
"""What the service runs a call for when it gives no timeout (its DEFAULT_TIMEOUT_MS)."""
RESTART_ALLOWANCE_S = 15.0
"""A call past its timeout may still be interrupted, and its interpreter restarted."""


def run_s(timeout_ms: int | None) -> float:
    """How long a call may take: its timeout, and what its interrupt may add."""
    return (timeout_ms or DEFAULT_RUN_MS) / 1000 + RESTART_ALLOWANCE_S


def call_body(
    code: str, stdin: str | None, timeout_ms: int | None, figure_formats: Iterable[str] | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code}
    if stdin is not None:
        body["stdin"] = stdin
    if timeout_ms is not None:
        body["timeoutMs"] = timeout_ms
    if figure_formats is not None:
        body["figureFormats"] = list(figure_formats)
    return body


class AsyncContext:
    """One code context of the service."""

    def __init__(
        self, client: AsyncClient, create: dict[str, Any], context_id: str | None = None
    ) -> None:
        self._client = client
        self._create = create
        self._owned = context_id is None
        self.context_id = context_id or ""
        self.files = AsyncContextFiles(self)

    async def open(self) -> AsyncContext:
        if not self.context_id:
            created = (await self._client.request("POST", "/contexts", json=self._create)).json()
            self.context_id = str(created["contextId"])
        return self

    async def close(self) -> None:
        """Close the context (one this object opened); one already gone is closed."""
        if not self.context_id or not self._owned:
            return
        await self._client.delete(self.path(""))
        self.context_id = ""

    async def __aenter__(self) -> AsyncContext:
        return await self.open()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def path(self, rest: str) -> str:
        if not self.context_id:
            raise SandboxClientError("the context is not open (use it in a with block)")
        return f"/contexts/{self.context_id}{rest}"

    async def run(
        self,
        code: str,
        *,
        stdin: str | None = None,
        timeout_ms: int | None = None,
        figure_formats: Iterable[str] | None = None,
    ) -> ContextResult:
        """Run ``code`` in the context; its failure is in the result, the platform's
        raises (a ``409``: another call on this context is running)."""
        body = call_body(code, stdin, timeout_ms, figure_formats)
        wait = self._client.request_timeout_s + run_s(timeout_ms)
        response = await self._client.request(
            "POST", self.path("/execute"), json=body, timeout_s=wait
        )
        return ContextResult.from_json(response.json())

    async def stream(
        self,
        code: str,
        *,
        stdin: str | None = None,
        timeout_ms: int | None = None,
        figure_formats: Iterable[str] | None = None,
    ) -> AsyncIterator[Output | Result | Violation | ContextResult]:
        """Run ``code`` as ``run`` does, yielding its output, results and violations as
        they happen; the last item is the ``ContextResult``.  Leaving the loop early
        interrupts the call (KeyboardInterrupt in the code); the context stays."""
        body = call_body(code, stdin, timeout_ms, figure_formats)
        events = self._client.events(
            self.path("/execute"), body, ContextResult.from_json, run_s(timeout_ms)
        )
        async for event in events:
            yield event

    async def restart(self) -> None:
        """A fresh interpreter: the variables are gone, the files stay."""
        await self._client.request("POST", self.path("/restart"))

    async def info(self) -> dict[str, Any]:
        record: dict[str, Any] = (await self._client.request("GET", self.path(""))).json()
        return record


class AsyncContextFiles:
    """The files of a context's workspace (paths relative to it)."""

    def __init__(self, context: AsyncContext) -> None:
        self._context = context

    def _path(self, path: str) -> str:
        return self._context.path("/files/" + quote(path.lstrip("/"), safe="/"))

    async def list(self) -> list[WorkspaceFile]:
        listed = (await self._context._client.request("GET", self._context.path("/files"))).json()
        return [WorkspaceFile(str(f["path"]), int(f["size"])) for f in listed["files"]]

    async def read(self, path: str) -> bytes:
        return (await self._context._client.request("GET", self._path(path))).content

    async def write(self, path: str, content: bytes | str) -> None:
        data = content.encode() if isinstance(content, str) else content
        await self._context._client.request("PUT", self._path(path), content=data)

    async def delete(self, path: str) -> None:
        await self._context._client.request("DELETE", self._path(path))
