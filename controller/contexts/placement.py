"""The seam between the context service and where contexts run (this host, or pods).

A placement opens a context's sandbox and closes it; the service keeps every rule
(ownership, caps, expiry, one call at a time, the memory budget) and maps what the
placement raises to the product's errors: ``ContextFailed`` (the sandbox is gone: 410)
and ``FileRefused`` (a file operation's rule: 404 or 422), both runner.context's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from runner.contract import CallOutcome, RunLimits

from controller.errors import SandboxUnavailable
from sandbox_common.domains import DomainPolicy


@dataclass(frozen=True)
class ContextSpec:
    """What a new context's sandbox is made with."""

    context_id: str
    files: tuple[tuple[str, bytes], ...]
    """Written into the workspace before the interpreter is ready."""
    network: DomainPolicy | None
    """What its calls may reach by name; None: no network at all."""
    limits: RunLimits
    """The interpreter's rlimits (the whole sandbox's are its cgroup's)."""


class LiveContext(Protocol):
    """A context's sandbox, as the service uses it: one operation at a time."""

    async def run(
        self, code: str, stdin: str | None, limits: RunLimits, grace_ms: int, call_id: str
    ) -> CallOutcome:
        """One call; ``call_id`` is what the network's ask-callback is told."""

    async def restart(self) -> None: ...

    async def list_files(self, max_entries: int) -> tuple[list[tuple[str, int]], bool]: ...

    async def read_file(self, path: str, max_bytes: int) -> bytes: ...

    async def write_file(self, path: str, data: bytes) -> None: ...

    async def delete(self, path: str) -> None: ...


class ContextPlacement(Protocol):
    name: str

    async def open(self, spec: ContextSpec, caller: str) -> LiveContext:
        """A ready context; SandboxUnavailable when no sandbox can be had, FileRefused
        when its files cannot be written."""

    async def close(self, context: LiveContext) -> None:
        """Kill the context's sandbox and release everything it held."""


class NoContexts:
    """A placement that has no contexts: every creation is refused, saying why (503)."""

    name = "none"

    def __init__(self, why: str) -> None:
        self.why = why

    async def open(self, spec: ContextSpec, caller: str) -> LiveContext:
        raise SandboxUnavailable(self.why)

    async def close(self, context: LiveContext) -> None:
        """Nothing was ever opened."""
