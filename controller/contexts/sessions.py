"""Contexts kept in this process: records, caps, expiry and one operation at a time.

A context holds a sandbox of its placement (controller.contexts.local: one of this
host's) and MEMORY_LIMIT_MB of the memory budget for its whole life.  Its operations run
one at a time: a second one while one runs is answered 409 (``busy``) at once, never
queued behind a long call.  It closes when deleted, idle past ``idleTimeoutS``, past
``maxLifetimeS``, when its sandbox fails (410 to the call that found out), or when the
service stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from runner.contract import CallOutcome, ContextFailed, EventSink

from controller.budget import MemoryBudget
from controller.contexts.models import ContextInfo
from controller.contexts.placement import (
    ContextCall,
    ContextPlacement,
    ContextSpec,
    ContextTerms,
    LiveContext,
)
from controller.errors import Busy, Gone
from controller.keys import Caller
from controller.metrics import Metrics
from controller.sessions.registry import Registry, Session, SessionKind, SessionNames
from controller.settings import Settings
from sandbox_common.domains import DomainPolicy

log = logging.getLogger(__name__)

CONTEXT = SessionNames("code context", "ctx")


def context_kind(settings: Settings) -> SessionKind:
    """Code contexts' names, ids and caps, for the rules every kind shares."""
    return SessionKind(
        names=CONTEXT,
        deployment_cap=settings.max_contexts,
        deployment_setting="MAX_CONTEXTS",
        key_cap=lambda caller: caller.max_contexts,
        key_field="maxContexts",
    )


class Counted:
    """A live context that counts what it ran: calls, and interpreters replaced."""

    def __init__(self, live: LiveContext) -> None:
        self.live = live
        self.calls = 0
        self.restarts = 0

    async def run(self, call: ContextCall, events: EventSink | None = None) -> CallOutcome:
        ran = await self.live.run(call, events)
        self.calls += 1
        self.restarts += ran.restarted
        return ran

    async def interrupt(self, call_id: str) -> None:
        await self.live.interrupt(call_id)

    async def restart(self) -> None:
        await self.live.restart()
        self.restarts += 1

    async def list_files(self, max_entries: int) -> tuple[list[tuple[str, int]], bool]:
        return await self.live.list_files(max_entries)

    async def read_file(self, path: str, max_bytes: int) -> bytes:
        return await self.live.read_file(path, max_bytes)

    async def write_file(self, path: str, data: bytes) -> None:
        await self.live.write_file(path, data)

    async def delete(self, path: str) -> None:
        await self.live.delete(path)


@dataclass(kw_only=True)
class Context(Session):
    """An open context: its sandbox, and what it was made with."""

    live: Counted
    network: DomainPolicy | None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def info(self) -> ContextInfo:
        return ContextInfo(
            contextId=self.session_id,
            labels=self.labels,
            allowedDomains=ContextTerms.allowed_domains(self.network),
            createdAt=self.created_wall,
            lastUsedAt=self.last_used_at,
            expiresAt=self.expires_at,
            idleTimeoutS=self.idle_timeout_s,
            maxLifetimeS=self.max_lifetime_s,
            calls=self.live.calls,
            restarts=self.live.restarts,
            busy=self.lock.locked(),
        )


class LocalContextSessions:
    """Contexts in this process, over a placement's sandboxes."""

    def __init__(
        self,
        settings: Settings,
        placement: ContextPlacement,
        budget: MemoryBudget | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.name = placement.name
        self.settings = settings
        self.metrics = metrics or Metrics()
        self._placement = placement
        self._budget = budget
        self._registry: Registry[Context] = Registry(context_kind(settings), self._release)

    async def start(self) -> None:
        self._registry.start()

    async def stop(self) -> None:
        for context in await self._registry.stop():
            try:
                await self._release(context, "stopping")
            except Exception:  # every other context must still be released
                log.exception("closing code context %s at the stop", context.session_id)

    async def open(self, spec: ContextSpec, terms: ContextTerms, caller: Caller) -> ContextInfo:
        memory_mb = self.settings.memory_limit_mb
        with self._registry.creating(caller):
            if self._budget is not None:
                self._budget.hold(memory_mb, "a code context")
            try:
                live = await self._placement.open(spec, caller.name)
            except BaseException:
                if self._budget is not None:
                    self._budget.release(memory_mb)
                raise
        context = Context(
            session_id=spec.context_id,
            owner=caller.name,
            labels=dict(terms.labels),
            idle_timeout_s=terms.idle_timeout_s,
            max_lifetime_s=terms.max_lifetime_s,
            live=Counted(live),
            network=spec.network,
        )
        self._registry.add(context)
        return context.info()

    def list(self, caller: Caller | None = None) -> list[ContextInfo]:
        return [c.info() for c in self._registry.sessions(caller)]

    async def info(self, context_id: str, caller: Caller) -> ContextInfo:
        return self._registry.get(context_id, caller).info()

    async def close(self, context_id: str, caller: Caller) -> None:
        await self._registry.close(self._registry.get(context_id, caller), "deleted")

    async def _release(self, context: Context, why: str) -> None:
        self.metrics.contexts_closed.labels(why).inc()
        try:
            await self._placement.close(context.live.live)
        finally:
            if self._budget is not None:
                self._budget.release(self.settings.memory_limit_mb)

    @contextlib.asynccontextmanager
    async def operating(self, context_id: str, caller: Caller) -> AsyncIterator[LiveContext]:
        context = self._registry.get(context_id, caller)
        if context.lock.locked():
            raise busy(context_id)
        async with context.lock, self._registry.using(context):
            try:
                yield context.live
            except ContextFailed as exc:
                if context.closed:  # deleted, expired or stopping while it ran
                    raise Gone(
                        f"code context {context_id!r} was closed while the operation ran"
                    ) from None
                await self._registry.close(context, "failed")
                raise failed(context_id, str(exc)) from None


def busy(context_id: str) -> Busy:
    return Busy(
        f"code context {context_id!r} is running another call; its operations run one at a time"
    )


def failed(context_id: str, why: str) -> Gone:
    return Gone(
        f"code context {context_id!r} failed and is closed ({why}); its state and files are lost"
    )
