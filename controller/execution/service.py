"""The execute flow: request -> limits -> admission -> backend -> response (with annotations)."""

from __future__ import annotations

import signal as signals
import uuid
from typing import Literal

from runner.supervisor import Outcome

from controller.errors import InvalidRequest
from controller.execution.admission import Admission
from controller.execution.backend import ExecutionBackend, Job
from controller.execution.local import sandbox_limits
from controller.execution.models import (
    ExecuteRequest,
    ExecuteResponse,
    Truncated,
    Usage,
    Violation,
)
from controller.settings import Settings

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
                detail="the sandbox's supervisor process was killed by the code",
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

    def _check_sizes(self, request: ExecuteRequest) -> None:
        for field, value, limit, setting in (
            ("code", request.code, self.settings.max_code_bytes, "MAX_CODE_BYTES"),
            ("stdin", request.stdin, self.settings.max_stdin_bytes, "MAX_STDIN_BYTES"),
        ):
            if value is not None and len(value.encode("utf-8", "surrogatepass")) > limit:
                raise InvalidRequest(
                    field, "max_bytes", f"at most {limit} bytes of UTF-8 (setting {setting})"
                )
        if "\x00" in request.code:
            raise InvalidRequest("code", "no_nul", "source code cannot contain NUL characters")

    async def execute(self, request: ExecuteRequest) -> ExecuteResponse:
        self._check_sizes(request)
        timeout_ms = request.timeoutMs or self.settings.default_timeout_ms
        job = Job(
            execution_id=new_execution_id(),
            code=request.code,
            stdin=request.stdin,
            limits=sandbox_limits(self.settings, timeout_ms),
        )
        async with self.admission.slot():
            outcome = await self.backend.run(job)
        return self._response(job, outcome)

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
        )
