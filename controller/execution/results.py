"""An outcome (runner.contract) as the caller sees it: violations, the stderr annotation, text."""

from __future__ import annotations

import signal as signals
from typing import Literal

from runner.contract import Outcome

from controller.execution.models import (
    ExecuteResponse,
    NetworkUsage,
    Result,
    SkippedResult,
    Truncated,
    Usage,
    Violation,
)

# Signals that mean "a limit was hit", with the limit's name for the annotation.
LIMIT_SIGNALS = {
    signals.SIGXCPU: "CPU time limit exceeded",
    signals.SIGXFSZ: "file size limit exceeded (setting MAX_FILE_SIZE_MB)",
}
DENIAL_KINDS: dict[str, Literal["filesystem", "network"]] = {
    "filesystem": "filesystem",
    "network": "network",
}


def decode_output(data: bytes) -> str:
    """Bytes to text; invalid UTF-8 becomes U+FFFD, so no output can break the response."""
    return data.decode("utf-8", errors="replace")


def denied(outcome: Outcome) -> list[Violation]:
    """What the sandbox denied, by kind; a kind the contract does not know is ``other``."""
    return [
        Violation(
            kind=DENIAL_KINDS.get(d.kind, "other"),
            target=d.target,
            detail=d.detail,
        )
        for d in outcome.denials
    ]


def limit_violations(outcome: Outcome, timeout_ms: int, stopped: str = "killed") -> list[Violation]:
    found = []
    if outcome.timed_out:
        found.append(
            Violation(
                kind="limit",
                target="timeoutMs",
                detail=f"{stopped} after {timeout_ms} ms (wall-clock timeout)",
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
    for stream, truncated in (
        ("stdout", outcome.stdout_truncated),
        ("stderr", outcome.stderr_truncated),
    ):
        if truncated:
            found.append(
                Violation(
                    kind="limit",
                    target=stream,
                    detail="output over the capture limit was discarded "
                    "(setting OUTPUT_LIMIT_BYTES)",
                )
            )
    if outcome.memory_limit_hit:
        peak = f"; peak {outcome.max_rss_kb // 1024} MiB" if outcome.max_rss_kb else ""
        found.append(
            Violation(
                kind="limit",
                target="memory",
                detail="killed at the memory limit of the whole execution "
                f"(every process and the in-memory workspace together; setting "
                f"MEMORY_LIMIT_MB{peak})",
            )
        )
    if outcome.process_limit_hit:
        found.append(
            Violation(
                kind="limit",
                target="processes",
                detail="a new process or thread was refused at the limit of the whole "
                "execution (setting MAX_PROCESSES)",
            )
        )
    # A supervisor killed by the memory limit did not break down: the limit says why.
    if outcome.status_missing and not outcome.memory_limit_hit:
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


def response_for(
    execution_id: str, outcome: Outcome, timeout_ms: int, stopped: str = "killed"
) -> ExecuteResponse:
    """The response body, without its files (delivery adds those).  ``stopped``: what was
    done to code past its timeout (a context's is interrupted, not killed)."""
    violations = denied(outcome) + limit_violations(outcome, timeout_ms, stopped)
    return ExecuteResponse(
        executionId=execution_id,
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
            network=NetworkUsage(
                connections=outcome.network.connections,
                bytesSent=outcome.network.bytes_sent,
                bytesReceived=outcome.network.bytes_received,
            )
            if outcome.network is not None
            else None,
        ),
        uploads=[],
        files=[],
        skippedFiles=[],
        results=[Result(type=r.type, data=r.data, display=r.display) for r in outcome.results],
        skippedResults=[
            SkippedResult(type=s.type, display=s.display, size=s.size, reason=s.reason)
            for s in outcome.skipped_results
        ],
    )
