"""The seams between the context service and where contexts are kept and run.

``ContextSessions`` keeps the contexts' records and applies the session rules
(ownership, caps, expiry, one operation at a time): in this process
(controller.contexts.sessions, over a ``ContextPlacement`` that opens sandboxes on this
host), or in CodeContext resources whose runner pods the operator keeps
(controller.kubernetes.contexts), so that any replica serves any context.  The service
(controller.contexts.service) validates requests, shapes answers and counts, over
either.  What a live context raises: ``ContextFailed`` (the sandbox is gone: 410) and
``FileRefused`` (a file operation's rule: 404 or 422), both runner.contract's.
"""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol

from runner.contract import CallOutcome, EventSink, RunLimits

from controller.contexts.models import ContextInfo
from controller.errors import SandboxUnavailable
from controller.keys import Caller
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


@dataclass(frozen=True)
class ContextTerms:
    """What a new context's record keeps: what its caller asked, as the rules allowed it."""

    idle_timeout_s: int
    max_lifetime_s: int
    labels: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def allowed_domains(network: DomainPolicy | None) -> list[str]:
        """The names a context may reach, as its record lists them (none: no network)."""
        allowed = network.allowed if network is not None else ()
        return [("*." if p.wildcard else "") + p.name for p in allowed]


@dataclass(frozen=True)
class ContextCall:
    """One call on a context: what to run, under which limits."""

    code: str
    stdin: str | None
    limits: RunLimits
    grace_ms: int
    """How long an interrupted call may take to stop before its interpreter is replaced."""
    call_id: str
    """The call's id: its answer's ``executionId``, what the ask-callback is told."""
    figures: tuple[str, ...] = ("image/png",)


class LiveContext(Protocol):
    """A context's sandbox, as the service uses it: one operation at a time."""

    async def run(self, call: ContextCall, events: EventSink | None = None) -> CallOutcome:
        """One call; ``events`` is told its output, results and violations as they
        happen."""

    async def interrupt(self, call_id: str) -> None:
        """Interrupt that call if it runs now, as at its timeout; its answer still comes."""

    async def restart(self) -> None: ...

    async def list_files(self, max_entries: int) -> tuple[list[tuple[str, int]], bool]: ...

    async def read_file(self, path: str, max_bytes: int) -> bytes: ...

    async def write_file(self, path: str, data: bytes) -> None: ...

    async def delete(self, path: str) -> None: ...


async def to_the_end(
    context: LiveContext, call: ContextCall, events: EventSink | None
) -> CallOutcome:
    """``call`` on ``context``, run to its end.  Cancelled (a streamed call's caller went
    away), the call is interrupted as at its timeout, and awaited: the context is left
    free and usable once the code has stopped (or its interpreter been replaced, past the
    grace), in either placement; then the cancellation goes on."""
    running = asyncio.ensure_future(context.run(call, events))
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        if not running.done():
            await asyncio.shield(context.interrupt(call.call_id))
        while not running.done():  # bounded: the grace, then a restart
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.shield(running)  # cancelled again: the call still ends first
        raise


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


class ContextSessions(Protocol):
    """Where contexts are kept.  Every context belongs to the caller (controller.keys)
    that opened it: another caller's is not found (404), and each key has its cap."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def open(self, spec: ContextSpec, terms: ContextTerms, caller: Caller) -> ContextInfo:
        """A new context, ready for calls; 429 at a cap, 503 when no sandbox can be had,
        FileRefused when its files cannot be written."""

    def list(self, caller: Caller | None = None) -> list[ContextInfo]:
        """``caller``'s open contexts; None: everybody's (metrics)."""

    async def info(self, context_id: str, caller: Caller) -> ContextInfo: ...

    async def close(self, context_id: str, caller: Caller) -> None: ...

    def operating(
        self, context_id: str, caller: Caller
    ) -> AbstractAsyncContextManager[LiveContext]:
        """The caller's context, held for one operation: 404 if it is not the caller's,
        409 (``busy``) if another operation runs, 410 (and the context closed) if its
        sandbox fails meanwhile."""
