"""The execution backend protocol: where sandboxes are placed (this host, or pods).

A backend speaks the runner's contract (runner.contract): it takes a ``Job`` and
returns the ``Outcome``, decoded as untrusted input wherever it crossed a boundary.
The user's code failing is an outcome; the platform failing is SandboxUnavailable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from runner.contract import EventSink, Job, Outcome


@dataclass(frozen=True)
class SandboxCheck:
    """The result of the start-up self-test: a real sandboxed run, or why it failed."""

    ok: bool
    detail: str
    limits: str = ""
    """How a whole execution is bounded (cgroups, a pod's limits, or per process only)."""


NOT_STARTED = SandboxCheck(ok=False, detail="not started")


class ExecutionBackend(Protocol):
    name: str

    @property
    def check(self) -> SandboxCheck:
        """The latest self-test result; executions are refused unless it is ok."""

    @property
    def warm_sandboxes(self) -> int:
        """Sandboxes started and waiting for a job."""

    @property
    def warm_sandbox_mb(self) -> int:
        """Memory one warm sandbox holds on this host (measured at start; 0 elsewhere)."""

    async def start(self) -> SandboxCheck:
        """Prepare the backend and prove, with a real sandboxed run, that it isolates."""

    async def stop(self) -> None:
        """Kill everything the backend started."""

    async def run(self, job: Job, caller: str, events: EventSink | None = None) -> Outcome:
        """Run one job in a fresh sandbox for the caller whose key is named ``caller``
        (Kubernetes labels the pod with it); raise SandboxUnavailable on platform failure.
        ``events`` is told the run's output, results and violations as they happen."""
