"""``python -m runner serve``: a warm sandbox that takes exactly one job over HTTP (a runner pod).

The pod starts this, the sandbox warms up (interpreter started, everything mounted),
and only then does the runner listen; the controller sends the job straight to the
pod's address, never through the API server:

    GET  /ready   200 while the sandbox is warm and unclaimed, else 503 (readiness probe;
                  no token: it says nothing but that)
    POST /run     ``Authorization: Bearer <token>``; the body is a job (runner.wire); the
                  answer (200) streams the run's events as they happen, one line each,
                  and ends with its outcome's line, or its failure's (the sandbox
                  failed); a bad job is a 422; then the runner exits, and the pod with it

The token's SHA-256 comes from the environment (the pod spec holds only the digest, so
reading the pod reveals no credential).  One job, once: a second ``/run`` gets 409.  A
job whose sandbox limits differ from the mounted ones is refused (422), since a mounted
sandbox cannot change them.  With no job after ``--max-idle-s``, the runner exits.
Standard library only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from pathlib import Path

from runner.cli import run_counting_oom_kills
from runner.contract import Event, EventSink, Job, Outcome, SandboxLimits
from runner.egress import EgressRelay, new_egress_dir, sandbox_group, with_egress
from runner.launch import READY_TIMEOUT_S, SETUP_ERRORS, RunnerOptions
from runner.supervisor import Sandbox, SandboxError
from runner.wire import (
    MAX_JOB_BYTES,
    Failure,
    WireError,
    decode_job,
    encode_event,
    encode_failure,
    encode_outcome,
)
from sandbox_common import bearer

HEAD_LIMIT = 16 * 1024
HEAD_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 60.0
REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    409: "Conflict",
    411: "Length Required",
    413: "Content Too Large",
    422: "Unprocessable Content",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class ServeOptions:
    host: str
    port: int
    token_digest: bytes
    """SHA-256 of the token ``POST /run`` needs (sandbox_common.bearer)."""
    mounted: SandboxLimits
    max_idle_s: float

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ServeOptions:
        try:
            digest = bytes.fromhex(os.environ.get(args.token_sha256_env, ""))
        except ValueError:
            digest = b""
        return cls(
            host=args.host,
            port=args.port,
            token_digest=digest,
            mounted=SandboxLimits(workspace_bytes=args.workspace_bytes, tmp_bytes=args.tmp_bytes),
            max_idle_s=args.max_idle_s,
        )


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: list[tuple[bytes, bytes]]

    def header(self, name: bytes) -> list[bytes]:
        return [v for n, v in self.headers if n == name]


async def read_head(reader: asyncio.StreamReader) -> Request | None:
    """The request line and headers, or None when they are malformed or too large."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
        return None
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        return None
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            return None
        headers.append((name.strip().lower(), value.strip()))
    return Request(parts[0].decode("latin-1"), parts[1].decode("latin-1"), headers)


def response(status: int, body: bytes, content_type: str = "application/json") -> bytes:
    head = (
        f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def error(status: int, message: str) -> bytes:
    return response(status, json.dumps({"error": REASONS[status], "message": message}).encode())


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
    b"Cache-Control: no-cache\r\nConnection: close\r\n\r\n"
)


class StreamedAnswer:
    """A 200 whose body is a run's events, a line each as they happen (runner.wire's
    ``event``), and then its last line: the outcome, or the failure.  The body ends
    with the connection (no length is known ahead)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._ended = False
        writer.write(STREAM_HEAD)

    def __call__(self, event: Event) -> None:
        if not self._ended and not self._writer.is_closing():
            self._writer.write(encode_event(event) + b"\n")

    def last(self, line: bytes) -> bytes:
        """The body's last line, for the caller to write: no event is written after it."""
        self._ended = True
        return line + b"\n"


class OneJobServer:
    """Serves the readiness probe and exactly one job on a warm sandbox."""

    def __init__(
        self,
        sandbox: Sandbox,
        token_digest: bytes,
        egress_dir: Path | None = None,
        egress_group: int | None = None,
    ) -> None:
        self._sandbox = sandbox
        self._digest = token_digest
        self._egress_dir = egress_dir
        self._egress_group = egress_group
        self.claimed = False
        self.finished = asyncio.Event()
        """Set once the job's answer has been written: the runner may exit."""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ran = False
        try:
            request = await read_head(reader)
            if request is None:
                answer = error(400, "malformed request")
            else:
                answer, ran = await self._dispatch(request, reader, writer)
            writer.write(answer)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        finally:
            writer.close()
            if ran:
                self.finished.set()

    async def _dispatch(
        self, request: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[bytes, bool]:
        """The answer (what is left of it, once it streams), and whether the one job ran
        (and the sandbox is spent)."""
        if request.path == "/ready" and request.method == "GET":
            ready = self._sandbox.alive and not self.claimed
            return response(200 if ready else 503, json.dumps({"ready": ready}).encode()), False
        if (request.method, request.path) != ("POST", "/run"):
            return error(404, "the endpoints are GET /ready and POST /run"), False
        verdict = bearer.check(request.header(b"authorization"), self._digest)
        if verdict is not bearer.Verdict.OK:
            return error(401, f"bearer token {verdict.value}"), False
        if self.claimed:
            return error(409, "this runner has already taken its one job"), False
        lengths = request.header(b"content-length")
        if len(lengths) != 1 or not lengths[0].isdigit():
            return error(411, "one Content-Length is required"), False
        if int(lengths[0]) > MAX_JOB_BYTES:
            return error(413, f"a job is at most {MAX_JOB_BYTES} bytes"), False
        self.claimed = True  # before the first await: no second request gets past here
        try:
            job = await self._read_job(reader, int(lengths[0]))
        except _Refused as refused:
            self.claimed = False  # the sandbox is untouched: it can still take a job
            return refused.answer, False
        answer = StreamedAnswer(writer)
        try:
            outcome = await self._run(job, answer)
        except SandboxError as exc:
            failure = Failure("sandbox_failed", str(exc))
            return answer.last(encode_failure(job.execution_id, failure)), True
        return answer.last(encode_outcome(job.execution_id, outcome)), True

    async def _run(self, job: Job, events: EventSink) -> Outcome:
        if job.egress is None:
            return await run_counting_oom_kills(self._sandbox, job, events)
        relay = EgressRelay(job.egress)
        directory = self._egress_dir
        assert directory is not None  # a job with egress was refused without one (_read_job)
        try:
            await relay.open(directory, self._egress_group)
        except OSError as exc:
            raise SandboxError(f"cannot open the execution's egress socket: {exc}") from exc
        try:
            outcome = await run_counting_oom_kills(self._sandbox, job, events)
        finally:
            await relay.close()
        return with_egress(outcome, relay.account)

    async def _read_job(self, reader: asyncio.StreamReader, length: int) -> Job:
        try:
            body = await asyncio.wait_for(reader.readexactly(length), BODY_TIMEOUT_S)
        except (asyncio.IncompleteReadError, TimeoutError):
            raise _Refused(error(400, "the body ended early")) from None
        try:
            job = decode_job(body)
        except WireError as exc:
            raise _Refused(
                response(422, encode_failure("", Failure("bad_job", str(exc))))
            ) from None
        if job.egress is not None and self._egress_dir is None:
            message = "this runner was started without --egress: the job cannot reach names"
            raise _Refused(
                response(422, encode_failure(job.execution_id, Failure("bad_job", message)))
            )
        if job.sandbox != self._sandbox.mounted:
            message = f"the sandbox is mounted with {self._sandbox.mounted}, not {job.sandbox}"
            failure = encode_failure(job.execution_id, Failure("bad_job", message))
            raise _Refused(response(422, failure))
        return job


class _Refused(Exception):
    def __init__(self, answer: bytes) -> None:
        super().__init__()
        self.answer = answer


class Unservable(Exception):
    """The runner cannot serve: its exit status, and why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@contextlib.asynccontextmanager
async def warm_sandbox(
    options: RunnerOptions, serving: ServeOptions
) -> AsyncIterator[tuple[Sandbox, Path | None, int | None]]:
    """The runner's one sandbox, warm (with its egress directory and group when it may
    reach names); everything it made is gone after the block.  Unservable (2: no token
    digest; 3: no sandbox) when there is none; SandboxError when it fails to warm up."""
    if len(serving.token_digest) != 32:
        raise Unservable(2, "the token digest must be a hex SHA-256 (--token-sha256-env)")
    try:
        command, made = await asyncio.to_thread(options.prepare, serving.mounted)
    except SETUP_ERRORS as exc:
        raise Unservable(3, f"cannot prepare the sandbox: {exc}") from exc
    group = sandbox_group(options.host_ids)
    egress_dir = None
    if command.egress:
        egress_dir = new_egress_dir(Path(tempfile.gettempdir()), group)
    sandbox = command.start(egress_dir=str(egress_dir) if egress_dir else None)
    try:
        await sandbox.wait_ready(READY_TIMEOUT_S)
        yield sandbox, egress_dir, group
    finally:
        await sandbox.close()
        for directory in (made, egress_dir):
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)


async def serving_status(serve: Awaitable[None]) -> int:
    """Run a runner's serving; its exit status, and why on stdout when it is not 0."""
    try:
        await serve
    except Unservable as exc:
        print(f"runner: {exc.message}", flush=True)
        return exc.status
    except SandboxError as exc:
        print(f"runner: the sandbox failed: {exc}", flush=True)
        return 3
    return 0


async def serve(options: RunnerOptions, serving: ServeOptions) -> int:
    """Warm one sandbox, serve until its job is answered (or nobody came); the exit status."""
    return await serving_status(_serve_one_job(options, serving))


async def _serve_one_job(options: RunnerOptions, serving: ServeOptions) -> None:
    async with warm_sandbox(options, serving) as (sandbox, egress_dir, group):
        runner = OneJobServer(sandbox, serving.token_digest, egress_dir, group)
        server = await asyncio.start_server(
            runner.handle, serving.host, serving.port, limit=HEAD_LIMIT, reuse_address=True
        )
        print(json.dumps({"ready": True, "port": serving.port}), flush=True)
        async with server:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(runner.finished.wait(), serving.max_idle_s)
            if runner.claimed:  # a job came just now: the sandbox's own deadline bounds it
                await runner.finished.wait()
