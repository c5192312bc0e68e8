"""The execute flow: request -> limits -> admission -> backend -> response (with annotations)."""

from __future__ import annotations

import logging
import signal as signals
import uuid
from typing import Literal

import httpx
from runner.protocol import HarvestLimits
from runner.supervisor import Outcome

from controller.errors import InvalidRequest
from controller.execution import delivery
from controller.execution.admission import Admission
from controller.execution.backend import ExecutionBackend, Job
from controller.execution.limits import sandbox_limits
from controller.execution.models import (
    ExecuteRequest,
    ExecuteResponse,
    Truncated,
    Usage,
    Violation,
)
from controller.settings import Settings
from controller.uploads.policy import UploadPolicy, parse_allowed_hosts
from controller.uploads.transport import GuardedTransport, check_target

log = logging.getLogger(__name__)

# Signals that mean "a limit was hit", with the limit's name for the annotation.
LIMIT_SIGNALS = {
    signals.SIGXCPU: "CPU time limit exceeded",
    signals.SIGXFSZ: "file size limit exceeded (setting MAX_FILE_SIZE_MB)",
}


DENIAL_KINDS: dict[str, Literal["filesystem", "network"]] = {
    "filesystem": "filesystem",
    "network": "network",
}


def new_execution_id() -> str:
    return "ex-" + uuid.uuid4().hex[:20]


def decode_output(data: bytes) -> str:
    """Bytes to text; invalid UTF-8 becomes U+FFFD, so no output can break the response."""
    return data.decode("utf-8", errors="replace")


def limit_violations(outcome: Outcome, timeout_ms: int) -> list[Violation]:
    found = []
    if outcome.timed_out:
        found.append(
            Violation(
                kind="limit",
                target="timeoutMs",
                detail=f"killed after {timeout_ms} ms (wall-clock timeout)",
            )
        )
    if outcome.signal in LIMIT_SIGNALS:
        found.append(
            Violation(
                kind="limit",
                target=signals.Signals(outcome.signal).name,
                detail=LIMIT_SIGNALS[signals.Signals(outcome.signal)],
            )
        )
    for stream in ("stdout", "stderr"):
        if getattr(outcome, f"{stream}_truncated"):
            found.append(
                Violation(
                    kind="limit",
                    target=stream,
                    detail="output over the capture limit was discarded "
                    "(setting OUTPUT_LIMIT_BYTES)",
                )
            )
    if outcome.status_missing:
        found.append(
            Violation(
                kind="other",
                target="sandbox",
                detail="the sandbox's supervisor process ended without reporting",
            )
        )
    return found


def annotation(violations: list[Violation]) -> str:
    """The short block appended to stderr that names what the sandbox denied."""
    if not violations:
        return ""
    lines = [f"[sandbox] {v.kind} {v.target}: {v.detail}" for v in violations]
    noun = "event" if len(violations) == 1 else "events"
    return f"\n--- sandbox: {len(violations)} {noun} ---\n" + "\n".join(lines) + "\n"


class ExecutionService:
    """Validated requests in, responses out; owns admission in front of the backend."""

    def __init__(self, settings: Settings, backend: ExecutionBackend) -> None:
        self.settings = settings
        self.backend = backend
        self.admission = Admission(
            settings.max_concurrent_executions, settings.max_queued_executions
        )
        self.upload_policy = UploadPolicy(parse_allowed_hosts(settings.upload_allowed_hosts))
        self._uploads = httpx.AsyncClient(
            transport=GuardedTransport(self.upload_policy, settings.upload_concurrency * 4),
            timeout=settings.upload_timeout_s,
            follow_redirects=False,
        )

    async def close(self) -> None:
        await self._uploads.aclose()

    def _check_sizes(self, request: ExecuteRequest) -> None:
        settings = self.settings
        for field, value, limit, setting in (
            ("code", request.code, settings.max_code_bytes, "MAX_CODE_BYTES"),
            ("stdin", request.stdin, settings.max_stdin_bytes, "MAX_STDIN_BYTES"),
        ):
            if value is not None and len(value.encode("utf-8", "surrogatepass")) > limit:
                raise InvalidRequest(
                    field, "max_bytes", f"at most {limit} bytes of UTF-8 (setting {setting})"
                )
        if "\x00" in request.code:
            raise InvalidRequest("code", "no_nul", "source code cannot contain NUL characters")
        if len(request.files) > settings.max_input_files:
            raise InvalidRequest(
                "files",
                "max_items",
                f"at most {settings.max_input_files} files (setting MAX_INPUT_FILES)",
            )
        if sum(len(f.data) for f in request.files) > settings.max_input_bytes:
            raise InvalidRequest(
                "files",
                "max_bytes",
                f"at most {settings.max_input_bytes} bytes in all, decoded "
                "(setting MAX_INPUT_BYTES)",
            )

    async def _check_upload_target(self, request: ExecuteRequest) -> None:
        if request.fileUploadUrl is None:
            return
        refusal = await check_target(self.upload_policy, httpx.URL(str(request.fileUploadUrl)))
        if refusal:
            raise InvalidRequest("fileUploadUrl", "upload_target", refusal)

    async def execute(self, request: ExecuteRequest) -> ExecuteResponse:
        self._check_sizes(request)
        await self._check_upload_target(request)  # refused before anything runs
        settings = self.settings
        timeout_ms = request.timeoutMs or settings.default_timeout_ms
        job = Job(
            execution_id=new_execution_id(),
            code=request.code,
            stdin=request.stdin,
            limits=sandbox_limits(settings, timeout_ms),
            files=tuple((f.path, f.data) for f in request.files),
            harvest=HarvestLimits(
                settings.max_output_files, settings.max_output_file_bytes, settings.max_output_bytes
            ),
        )
        async with self.admission.slot():
            outcome = await self.backend.run(job)
        if outcome.setup_error:
            raise InvalidRequest("files", "writable", outcome.setup_error)
        response = self._response(job, outcome)
        # One line per execution for operators: outcome and sizes, never code or output.
        log.info(
            "execution %s exit=%s signal=%s timed_out=%s duration_ms=%.1f violations=%d files=%d",
            job.execution_id,
            outcome.exit_code,
            outcome.signal,
            outcome.timed_out,
            outcome.duration_ms,
            len(response.violations),
            len(outcome.harvested.files),
        )
        if request.fileUploadUrl is not None:
            response.uploads, response.skippedFiles = await delivery.upload(
                outcome.harvested,
                self._uploads,
                str(request.fileUploadUrl),
                request.uploadToken,
                request.public,
                settings.upload_concurrency,
            )
        else:
            response.files, response.skippedFiles = delivery.inline(
                outcome.harvested, settings.max_inline_bytes
            )
        return response

    def _response(self, job: Job, outcome: Outcome) -> ExecuteResponse:
        denied = [
            Violation(
                kind=DENIAL_KINDS.get(v["kind"], "other"), target=v["target"], detail=v["detail"]
            )
            for v in outcome.violations
        ]
        violations = denied + limit_violations(outcome, job.limits.timeout_ms)
        return ExecuteResponse(
            executionId=job.execution_id,
            exitCode=outcome.exit_code,
            signal=outcome.signal,
            timedOut=outcome.timed_out,
            stdout=decode_output(outcome.stdout),
            stderr=decode_output(outcome.stderr) + annotation(violations),
            durationMs=outcome.duration_ms,
            truncated=Truncated(stdout=outcome.stdout_truncated, stderr=outcome.stderr_truncated),
            violations=violations,
            usage=Usage(
                cpuUserMs=outcome.cpu_user_ms,
                cpuSystemMs=outcome.cpu_system_ms,
                peakMemoryKb=outcome.max_rss_kb,
            ),
            uploads=[],
            files=[],
            skippedFiles=[],
        )
