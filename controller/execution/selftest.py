"""The start-up self-test every backend runs: a real sandboxed execution that must prove isolation.

Fail closed: unless the code runs as the sandbox's unprivileged user and sees no network
interface but its own loopback, no code runs at all.
"""

from __future__ import annotations

from runner.contract import Job, Outcome

from controller.execution.backend import SandboxCheck
from controller.execution.limits import run_limits, sandbox_limits
from controller.settings import Settings

SELF_TEST_CODE = "import os, socket; print(os.getuid(), len(socket.if_nameindex()))"
SELF_TEST_EXPECTED = b"1000 1\n"  # the sandbox uid, and only the loopback interface
SELF_TEST_TIMEOUT_MS = 10_000


def self_test_job(settings: Settings) -> Job:
    return Job(
        execution_id="self-test",
        code=SELF_TEST_CODE,
        sandbox=sandbox_limits(settings),
        limits=run_limits(settings, SELF_TEST_TIMEOUT_MS),
    )


def judge(outcome: Outcome, verified: str, limits: str) -> SandboxCheck:
    """The check the self-test's outcome earns; ``verified`` describes a pass, ``limits``
    how the backend bounds a whole execution."""
    if outcome.exit_code != 0 or outcome.stdout != SELF_TEST_EXPECTED:
        detail = (outcome.stderr or outcome.stdout).decode("utf-8", "replace")[-500:]
        return SandboxCheck(
            ok=False, detail=f"sandbox self-test failed: {detail.strip()}", limits=limits
        )
    return SandboxCheck(ok=True, detail=verified, limits=limits)
