"""``python -m runner serve --context``: a warm sandbox that becomes one code context, over HTTP.

A context's runner pod runs this: it warms its sandbox (interpreter started, everything
mounted) before anyone asks, then serves the one context that claims it.  Whoever holds
the context's token (its SHA-256 comes from the environment, as for ``runner serve``)
reaches it at the pod's address:

    GET    /ready        200 while the sandbox lives (no token; it says nothing else)
    POST   /context      the setup, once: a job document (runner.wire) whose files, limits
                         and egress grant the context keeps (its code is not run)
    POST   /run          {"executionId", "code", "stdin"?, "timeoutMs", "graceMs",
                         "figures"?}: the call's events as they happen, a line each, then
                         its outcome's line (runner.wire), with "restarted"; or, when the
                         context fails meanwhile, a failure's line (``context_failed``)
    POST   /interrupt    {"executionId"}: that call, if it runs now, is interrupted as at
                         its timeout (its caller went away); answered at once, even while
                         busy
    POST   /restart      a fresh interpreter; the files stay
    GET    /files[?max=N]  {"files": [{"path", "size"}], "complete"}: N at most
    GET|PUT|DELETE /files/PATH   a file's bytes (PUT: the body is the file)
    GET    /status       {"begun", "busy", "idleS", "calls", "restarts", "failed"}: the
                         idle clock, and what the context has done

One operation at a time: another one meanwhile is a 409 (``busy``).  A file refused is a
404 (``not_found``) or a 422 naming the rule.  Once the sandbox has failed, every
operation is a 503 and the runner exits (the pod ends with it).  With no setup within
``--max-idle-s``, it exits too.  Standard library only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qs, unquote

from runner.context import ContextSandbox
from runner.contract import FIGURE_TYPES, MAX_TIMEOUT_MS, ContextFailed, FileRefused, Job
from runner.egress import EgressRelay, with_egress
from runner.launch import RunnerOptions
from runner.serve import (
    BODY_TIMEOUT_S,
    HEAD_LIMIT,
    Request,
    ServeOptions,
    StreamedAnswer,
    error,
    read_head,
    response,
    serving_status,
    warm_sandbox,
)
from runner.supervisor import Sandbox
from runner.wire import (
    MAX_JOB_BYTES,
    Failure,
    WireError,
    decode_job,
    encode_call,
    encode_failure,
)
from sandbox_common import bearer
from sandbox_common.egress_account import EgressAccount

MAX_GRACE_MS = 60_000
MAX_LISTED = 100_000
MAX_FILE_BYTES = MAX_JOB_BYTES


def _most_listed(path: str) -> int:
    """The ``max`` of ``/files?max=N`` (1 to MAX_LISTED; MAX_LISTED when not given)."""
    query = parse_qs(path.partition("?")[2])
    asked = query.get("max", [str(MAX_LISTED)])[-1]
    if not asked.isdigit() or not 1 <= int(asked) <= MAX_LISTED:
        raise _Answer(422, f"max is a count from 1 to {MAX_LISTED}", "bad_call")
    return int(asked)


class _Answer(Exception):
    """An HTTP answer other than success, raised from deep in a route."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code

    def bytes(self) -> bytes:
        if self.code is None:
            return error(self.status, self.message)
        body = {"error": self.code, "message": self.message}
        return response(self.status, json.dumps(body).encode())


class ContextServer:
    """Serves the readiness probe and one context on a warm sandbox."""

    def __init__(
        self,
        sandbox: Sandbox,
        token_digest: bytes,
        egress_dir: Path | None = None,
        egress_group: int | None = None,
    ) -> None:
        self._sandbox = sandbox
        self._digest = token_digest
        self._egress_dir, self._egress_group = egress_dir, egress_group
        self._context: ContextSandbox | None = None
        self._setup: Job | None = None
        self._relay: EgressRelay | None = None
        self._busy = False
        self._calling: str | None = None
        """The id of the call that runs now."""
        self._last_used = time.monotonic()
        self._calls = 0
        self._restarts = 0
        self.begun = asyncio.Event()
        self.finished = asyncio.Event()
        """Set when the context's sandbox has failed: the runner exits."""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await read_head(reader)
            if request is None:
                answer = error(400, "malformed request")
            else:
                try:
                    answer = await self._dispatch(request, reader, writer)
                except _Answer as refused:
                    answer = refused.bytes()
            writer.write(answer)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        finally:
            writer.close()

    async def _dispatch(
        self, request: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bytes:
        method, path = request.method, request.path
        if (method, path) == ("GET", "/ready"):
            ready = self._sandbox.alive and not self.finished.is_set()
            return response(200 if ready else 503, json.dumps({"ready": ready}).encode())
        verdict = bearer.check(request.header(b"authorization"), self._digest)
        if verdict is not bearer.Verdict.OK:
            raise _Answer(401, f"bearer token {verdict.value}")
        if (method, path) == ("GET", "/status"):
            return self._status()
        if (method, path) == ("POST", "/interrupt"):
            try:
                asked = json.loads(await self._body(request, reader)).get("executionId")
            except (ValueError, AttributeError, RecursionError):
                raise _Answer(422, "an interrupt is {executionId}", "bad_call") from None
            if self._context is not None and self._calling is not None and asked == self._calling:
                await self._context.interrupt()
            return response(200, b"{}")
        if self.finished.is_set():
            raise _Answer(503, f"the context failed: {self._failure()}")
        if self._busy:
            raise _Answer(409, "the context is running another operation", "busy")
        body = await self._body(request, reader) if method in ("POST", "PUT") else b""
        self._busy = True  # no await between the check and here
        try:
            return await self._route(method, path, body, writer)
        except ContextFailed as exc:
            self.finished.set()
            raise _Answer(503, f"the context failed: {exc}") from None
        except FileRefused as refused:
            status = 404 if refused.rule == "not_found" else 422
            raise _Answer(status, refused.message, refused.rule) from None
        finally:
            self._busy = False
            self._last_used = time.monotonic()

    async def _route(
        self, method: str, path: str, body: bytes, writer: asyncio.StreamWriter
    ) -> bytes:
        if (method, path) == ("POST", "/context"):
            return await self._begin(body)
        context = self._context
        if context is None:
            raise _Answer(409, "the context has not been set up (POST /context)", "not_begun")
        if (method, path) == ("POST", "/run"):
            return await self._run(context, body, writer)
        if (method, path) == ("POST", "/restart"):
            await context.restart()
            self._restarts += 1
            return response(200, b'{"restarted": true}')
        if method == "GET" and path.split("?")[0] == "/files":
            files, complete = await context.list_files(_most_listed(path))
            listed = [{"path": p, "size": s} for p, s in files]
            return response(200, json.dumps({"files": listed, "complete": complete}).encode())
        if path.startswith("/files/"):
            name = unquote(path.removeprefix("/files/"))
            if method == "GET":
                data = await context.read_file(name, MAX_FILE_BYTES)
                return response(200, data, "application/octet-stream")
            if method == "PUT":
                await context.write_file(name, body)
                return response(200, b"{}")
            if method == "DELETE":
                await context.delete(name)
                return response(200, b"{}")
        raise _Answer(404, f"no operation {method} {path}")

    async def _body(self, request: Request, reader: asyncio.StreamReader) -> bytes:
        lengths = request.header(b"content-length")
        if len(lengths) != 1 or not lengths[0].isdigit():
            raise _Answer(411, "one Content-Length is required")
        length = int(lengths[0])
        if length > MAX_JOB_BYTES:
            raise _Answer(413, f"a body is at most {MAX_JOB_BYTES} bytes")
        try:
            return await asyncio.wait_for(reader.readexactly(length), BODY_TIMEOUT_S)
        except (asyncio.IncompleteReadError, TimeoutError):
            raise _Answer(400, "the body ended early") from None

    async def _begin(self, body: bytes) -> bytes:
        if self._context is not None:
            raise _Answer(409, "this runner serves one context, set up already", "begun")
        try:
            setup = decode_job(body)
        except WireError as exc:
            raise _Answer(422, str(exc), "bad_setup") from None
        if setup.sandbox != self._sandbox.mounted:
            message = f"the sandbox is mounted with {self._sandbox.mounted}, not {setup.sandbox}"
            raise _Answer(422, message, "bad_setup")
        if setup.egress is not None and self._egress_dir is None:
            raise _Answer(422, "this runner was started without --egress", "bad_setup")
        context = ContextSandbox(self._sandbox)
        if setup.egress is not None:
            relay = EgressRelay(setup.egress)
            try:
                assert self._egress_dir is not None
                await relay.open(self._egress_dir, self._egress_group)
            except OSError as exc:
                context.close()
                raise ContextFailed(f"cannot open the context's egress socket: {exc}") from exc
            self._relay = relay
        files = [(f.path, f.content) for f in setup.files]
        try:
            await context.begin(files, setup.limits, egress=setup.egress is not None)
        except FileRefused:
            context.close()
            self.finished.set()  # its sandbox may hold some of the files: not reused
            raise
        self._context, self._setup = context, setup
        self.begun.set()
        return response(200, b'{"ready": true}')

    async def _run(
        self, context: ContextSandbox, body: bytes, writer: asyncio.StreamWriter
    ) -> bytes:
        assert self._setup is not None
        try:
            call = json.loads(body)
            execution_id = str(call["executionId"])[:64]
            code, stdin = call["code"], call.get("stdin")
            timeout_ms, grace_ms = int(call["timeoutMs"]), int(call["graceMs"])
            figures = tuple(call.get("figures") or ("image/png",))
            if not isinstance(code, str) or not (stdin is None or isinstance(stdin, str)):
                raise TypeError("code and stdin are text")
            if not figures or not set(figures) <= set(FIGURE_TYPES):
                raise ValueError(f"figures are some of {', '.join(FIGURE_TYPES)}")
            if not (0 < timeout_ms <= MAX_TIMEOUT_MS and 0 < grace_ms <= MAX_GRACE_MS):
                raise ValueError("timeoutMs or graceMs out of range")
        except (ValueError, TypeError, KeyError, RecursionError) as exc:
            raise _Answer(
                422,
                f"a call is {{executionId, code, stdin?, timeoutMs, graceMs, figures?}}: {exc}",
                "bad_call",
            ) from None
        limits = replace(self._setup.limits, timeout_ms=timeout_ms)
        account = None
        if self._relay is not None:
            grant = self._relay.grant
            account = self._relay.account = EgressAccount(grant.max_connections, grant.max_bytes)
        answer = StreamedAnswer(writer)
        self._calling = execution_id
        try:
            result = await context.run(code, stdin, limits, grace_ms, figures, answer)
        except ContextFailed as exc:
            self.finished.set()
            failure = Failure("context_failed", f"the context failed: {exc}")
            return answer.last(encode_failure(execution_id, failure))
        finally:
            self._calling = None
        self._calls += 1
        self._restarts += result.restarted
        if account is not None:
            result = replace(result, outcome=with_egress(result.outcome, account))
        return answer.last(encode_call(execution_id, result))

    def _status(self) -> bytes:
        status = {
            "begun": self._context is not None,
            "busy": self._busy,
            "idleS": round(time.monotonic() - self._last_used, 3),
            "calls": self._calls,
            "restarts": self._restarts,
            "failed": self._failure() if self.finished.is_set() else None,
        }
        return response(200, json.dumps(status).encode())

    def _failure(self) -> str:
        return (self._context.failed if self._context else None) or "its sandbox ended"

    async def close(self) -> None:
        if self._relay is not None:
            await self._relay.close()
        if self._context is not None:
            self._context.close()


async def serve_context(options: RunnerOptions, serving: ServeOptions) -> int:
    """Warm one sandbox, serve the context that claims it until it fails (or nobody came
    within ``max_idle_s``); the exit status."""
    return await serving_status(_serve(options, serving))


async def _serve(options: RunnerOptions, serving: ServeOptions) -> None:
    async with warm_sandbox(options, serving) as (sandbox, egress_dir, group):
        server = ContextServer(sandbox, serving.token_digest, egress_dir, group)
        try:
            listening = await asyncio.start_server(
                server.handle, serving.host, serving.port, limit=HEAD_LIMIT, reuse_address=True
            )
            print(json.dumps({"ready": True, "port": serving.port, "context": True}), flush=True)
            async with listening:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(server.begun.wait(), serving.max_idle_s)
                if server.begun.is_set() or server.finished.is_set():
                    await server.finished.wait()
        finally:
            await server.close()
