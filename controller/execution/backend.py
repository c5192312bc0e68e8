"""The execution backend protocol: where sandboxes are placed (this host, or pods)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from runner.policy import Limits
from runner.protocol import HarvestLimits
from runner.supervisor import Outcome


@dataclass(frozen=True)
class Job:
    """One execution as the backend sees it (already validated)."""

    execution_id: str
    code: str
    stdin: str | None
    limits: Limits
    files: tuple[tuple[str, bytes], ...] = ()
    """Input files (relative path, content) written to the workspace before the run."""
    harvest: HarvestLimits | None = None
    """How much of what the code writes to collect; None collects nothing."""


@dataclass(frozen=True)
class SandboxCheck:
    """The result of the start-up self-test: a real sandboxed run, or why it failed."""

    ok: bool
    detail: str


class ExecutionBackend(Protocol):
    name: str
    check: SandboxCheck
    """The latest self-test result; executions are refused unless it is ok."""

    @property
    def warm_sandboxes(self) -> int:
        """Sandboxes started and waiting for a job."""

    async def start(self) -> SandboxCheck:
        """Prepare the backend and prove, with a real sandboxed run, that it isolates."""

    async def stop(self) -> None:
        """Kill everything the backend started."""

    async def run(self, job: Job) -> Outcome:
        """Run one job in a fresh sandbox; raise SandboxUnavailable on platform failure."""
