"""The context flow: create, call, files, restart, close; every rule, in any placement.

A context is owned by the key that made it (any other key gets 404), counted against the
deployment's cap (MAX_CONTEXTS) and its key's (``maxContexts``), and holds MEMORY_LIMIT_MB
of the memory budget for its whole life.  Its operations run one at a time: a second one
while one runs is answered 409 (``busy``) at once, never queued behind a long call.  It
closes when deleted, idle past ``idleTimeoutS``, past ``maxLifetimeS``, when its sandbox
fails (410 to the call that found out), or when the service stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

from runner.contract import ContextFailed, FileRefused
from runner.policy import PathRefused, input_path

from controller.budget import MemoryBudget
from controller.contexts.models import (
    ContextExecuteRequest,
    ContextExecuteResponse,
    ContextFile,
    ContextFiles,
    ContextInfo,
    CreateContextRequest,
)
from controller.contexts.placement import ContextPlacement, ContextSpec, LiveContext
from controller.errors import (
    Busy,
    ControllerError,
    Gone,
    InvalidRequest,
    NotFound,
    SandboxUnavailable,
)
from controller.execution.backend import SandboxCheck
from controller.execution.limits import check_code, check_input_bytes, run_limits
from controller.execution.results import response_for
from controller.execution.service import new_execution_id
from controller.keys import Caller
from controller.metrics import Metrics
from controller.network import execution_policy
from controller.sessions.registry import Registry, Session, SessionKind, SessionNames
from controller.settings import Settings
from sandbox_common.domains import DomainPolicy

log = logging.getLogger(__name__)

CONTEXT = SessionNames("code context", "ctx")


def context_kind(settings: Settings) -> SessionKind:
    return SessionKind(
        names=CONTEXT,
        deployment_cap=settings.max_contexts,
        deployment_setting="MAX_CONTEXTS",
        key_cap=lambda caller: caller.max_contexts,
        key_field="maxContexts",
    )


@dataclass(kw_only=True)
class Context(Session):
    """An open context: its sandbox, and what it was made with."""

    live: LiveContext
    network: DomainPolicy | None
    calls: int = 0
    restarts: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def info(self) -> ContextInfo:
        allowed = self.network.allowed if self.network is not None else ()
        return ContextInfo(
            contextId=self.session_id,
            labels=self.labels,
            allowedDomains=[("*." if p.wildcard else "") + p.name for p in allowed],
            createdAt=self.created_wall,
            lastUsedAt=self.last_used_at,
            expiresAt=self.expires_at,
            idleTimeoutS=self.idle_timeout_s,
            maxLifetimeS=self.max_lifetime_s,
            calls=self.calls,
            restarts=self.restarts,
            busy=self.lock.locked(),
        )


def call_outcome(response: ContextExecuteResponse) -> str:
    if response.restarted:
        return "restarted"
    if response.timedOut:
        return "timed_out"
    return "exited" if response.exitCode == 0 else "failed"


class ContextService:
    """The only way routes reach a context."""

    def __init__(
        self,
        settings: Settings,
        placement: ContextPlacement,
        check: Callable[[], SandboxCheck],
        budget: MemoryBudget | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        """``check``: the sandbox self-test's verdict (a context is a sandbox too: none
        is opened while it fails)."""
        self.settings = settings
        self.metrics = metrics or Metrics()
        self._placement = placement
        self._check = check
        self._budget = budget
        self._registry: Registry[Context] = Registry(context_kind(settings), self._release)

    def start(self) -> None:
        self._registry.start()

    async def stop(self) -> None:
        for context in await self._registry.stop():
            try:
                await self._release(context, "stopping")
            except Exception:  # every other context must still be released
                log.exception("closing code context %s at the stop", context.session_id)

    # --- the contexts ----------------------------------------------------------------

    async def create(self, request: CreateContextRequest, caller: Caller) -> ContextInfo:
        settings = self.settings
        check = self._check()
        if not check.ok:
            raise SandboxUnavailable(f"sandbox unavailable: {check.detail}")
        idle, lifetime = settings.context_timeouts.checked(
            request.idleTimeoutS, request.maxLifetimeS
        )
        policy = execution_policy(settings.network_ceiling, request.network)
        check_input_bytes(settings, sum(len(f.data) for f in request.files))
        context_id = CONTEXT.new_id()
        spec = ContextSpec(
            context_id=context_id,
            files=tuple((f.path, f.data) for f in request.files),
            network=policy,
            limits=run_limits(settings, settings.default_timeout_ms),
        )
        with self._registry.creating(caller):
            if self._budget is not None:
                self._budget.hold(settings.memory_limit_mb, "a code context")
            try:
                try:
                    live = await self._placement.open(spec, caller.name)
                except FileRefused as exc:
                    raise InvalidRequest("files", exc.rule, exc.message) from None
                except ContextFailed as exc:
                    raise SandboxUnavailable(f"the context's sandbox failed: {exc}") from None
            except BaseException:
                if self._budget is not None:
                    self._budget.release(settings.memory_limit_mb)
                raise
        context = Context(
            session_id=context_id,
            owner=caller.name,
            labels=dict(request.labels),
            idle_timeout_s=idle,
            max_lifetime_s=lifetime,
            live=live,
            network=policy,
        )
        self._registry.add(context)
        log.info("code context %s opened", context_id)
        return context.info()

    def get(self, context_id: str, caller: Caller) -> Context:
        return self._registry.get(context_id, caller)

    def list(self, caller: Caller | None = None) -> list[ContextInfo]:
        return [c.info() for c in self._registry.sessions(caller)]

    async def delete(self, context_id: str, caller: Caller) -> None:
        await self._registry.close(self.get(context_id, caller), "deleted")

    async def _release(self, context: Context, why: str) -> None:
        self.metrics.contexts_closed.labels(why).inc()
        try:
            await self._placement.close(context.live)
        finally:
            if self._budget is not None:
                self._budget.release(self.settings.memory_limit_mb)

    # --- operations ------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _operating(self, context_id: str, caller: Caller) -> AsyncIterator[Context]:
        """The caller's context, held for one operation; 409 if another runs, 410 (and
        the context closed) if its sandbox fails."""
        context = self.get(context_id, caller)
        if context.lock.locked():
            raise Busy(
                f"code context {context_id!r} is running another call; its operations run "
                "one at a time"
            )
        async with context.lock, self._registry.using(context):
            try:
                yield context
            except ContextFailed as exc:
                if context.closed:  # deleted, expired or stopping while it ran
                    raise Gone(
                        f"code context {context_id!r} was closed while the operation ran"
                    ) from None
                await self._registry.close(context, "failed")
                raise Gone(
                    f"code context {context_id!r} failed and is closed ({exc}); "
                    "its state and files are lost"
                ) from None

    async def execute(
        self, context_id: str, request: ContextExecuteRequest, caller: Caller
    ) -> ContextExecuteResponse:
        started = time.perf_counter()
        label = "error"
        try:
            response = await self._execute(context_id, request, caller)
            label = call_outcome(response)
            return response
        except ControllerError as exc:
            label = {InvalidRequest: "invalid", Busy: "busy", Gone: "gone"}.get(type(exc), "error")
            raise
        finally:
            self.metrics.context_calls.labels(label, caller.name).inc()
            self.metrics.context_call_seconds.observe(time.perf_counter() - started)

    async def _execute(
        self, context_id: str, request: ContextExecuteRequest, caller: Caller
    ) -> ContextExecuteResponse:
        settings = self.settings
        check_code(settings, request.code, request.stdin)
        limits = run_limits(settings, request.timeoutMs or settings.default_timeout_ms)
        call_id = new_execution_id()
        async with self._operating(context_id, caller) as context:
            call = await context.live.run(
                request.code, request.stdin, limits, settings.context_interrupt_grace_ms, call_id
            )
            context.calls += 1
            context.restarts += call.restarted
        stopped = (
            "interrupted, and its interpreter restarted when it had not stopped "
            f"{settings.context_interrupt_grace_ms} ms later (CONTEXT_INTERRUPT_GRACE_MS),"
            if call.restarted
            else "interrupted (KeyboardInterrupt)"
        )
        response = response_for(call_id, call.outcome, limits.timeout_ms, stopped)
        for violation in response.violations:
            self.metrics.violations.labels(violation.kind).inc()
        log.info(
            "context %s call %s exit=%s timed_out=%s restarted=%s duration_ms=%.1f",
            context_id,
            call_id,
            call.outcome.exit_code,
            call.outcome.timed_out,
            call.restarted,
            call.outcome.duration_ms,
        )
        return ContextExecuteResponse(**response.model_dump(), restarted=call.restarted)

    async def restart(self, context_id: str, caller: Caller) -> ContextInfo:
        async with self._operating(context_id, caller) as context:
            await context.live.restart()
            context.restarts += 1
        return context.info()

    async def list_files(self, context_id: str, caller: Caller) -> ContextFiles:
        async with self._operating(context_id, caller) as context:
            files, complete = await context.live.list_files(self.settings.max_context_files)
        return ContextFiles(
            files=[ContextFile(path=p, size=s) for p, s in files], complete=complete
        )

    async def read_file(self, context_id: str, path: str, caller: Caller) -> bytes:
        relative = checked_path(path)
        most = self.settings.max_output_file_bytes
        async with self._operating(context_id, caller) as context:
            with refused_as_errors(context_id, "MAX_OUTPUT_FILE_BYTES"):
                return await context.live.read_file(relative, most)

    async def write_file(self, context_id: str, path: str, data: bytes, caller: Caller) -> None:
        relative = checked_path(path)
        most = self.settings.max_input_bytes
        if len(data) > most:
            raise InvalidRequest(
                "body", "max_bytes", f"at most {most} bytes per file (setting MAX_INPUT_BYTES)"
            )
        async with self._operating(context_id, caller) as context:
            with refused_as_errors(context_id, "MAX_INPUT_BYTES"):
                await context.live.write_file(relative, data)

    async def delete_file(self, context_id: str, path: str, caller: Caller) -> None:
        relative = checked_path(path)
        async with self._operating(context_id, caller) as context:
            with refused_as_errors(context_id, ""):
                await context.live.delete(relative)


def checked_path(path: str) -> str:
    """A workspace path by the input files' rules (runner.policy.input_path); 422 else."""
    try:
        return input_path(path)
    except PathRefused as exc:
        raise InvalidRequest("path", exc.rule, exc.message) from None


@contextlib.contextmanager
def refused_as_errors(context_id: str, setting: str) -> Iterator[None]:
    """A file operation the sandbox refused, as the product's error: 404 for a path that
    is not there, 422 naming the rule for the rest."""
    try:
        yield
    except FileRefused as exc:
        if exc.rule == "not_found":
            raise NotFound(f"code context {context_id!r}: {exc.message}") from None
        where = f" (setting {setting})" if exc.rule == "max_bytes" and setting else ""
        raise InvalidRequest("path", exc.rule, exc.message + where) from None
