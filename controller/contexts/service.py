"""The context flow: create, call, files, restart, close; every rule, in any placement.

What a request may ask is checked here (the code's size, the timeouts' ceilings, the
network within the deployment's, the files' rules), and each answer is shaped and
counted here; where contexts are kept and run, and the session rules (ownership, caps,
expiry, one operation at a time), are the ``ContextSessions``' (controller.contexts
.placement: this process's, or CodeContext resources on Kubernetes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator

from runner.contract import ContextFailed, FileRefused
from runner.policy import PathRefused, input_path

from controller.contexts.models import (
    ContextExecuteRequest,
    ContextExecuteResponse,
    ContextFile,
    ContextFiles,
    ContextInfo,
    CreateContextRequest,
)
from controller.contexts.placement import (
    ContextCall,
    ContextSessions,
    ContextSpec,
    ContextTerms,
    to_the_end,
)
from controller.contexts.sessions import CONTEXT
from controller.errors import (
    Busy,
    ControllerError,
    Gone,
    InvalidRequest,
    NotFound,
    SandboxUnavailable,
)
from controller.execution.backend import SandboxCheck
from controller.execution.events import RunEvents
from controller.execution.limits import check_code, check_input_bytes, run_limits
from controller.execution.results import response_for
from controller.execution.service import new_execution_id
from controller.keys import Caller
from controller.metrics import Metrics
from controller.network import execution_policy
from controller.settings import Settings

log = logging.getLogger(__name__)


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
        sessions: ContextSessions,
        check: Callable[[], SandboxCheck],
        metrics: Metrics | None = None,
    ) -> None:
        """``check``: the sandbox self-test's verdict (a context is a sandbox too: none
        is opened while it fails)."""
        self.settings = settings
        self.metrics = metrics or Metrics()
        self._sessions = sessions
        self._check = check

    async def start(self) -> None:
        await self._sessions.start()

    async def stop(self) -> None:
        await self._sessions.stop()

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
        spec = ContextSpec(
            context_id=CONTEXT.new_id(),
            files=tuple((f.path, f.data) for f in request.files),
            network=policy,
            limits=run_limits(settings, settings.default_timeout_ms),
        )
        terms = ContextTerms(idle, lifetime, dict(request.labels))
        try:
            info = await self._sessions.open(spec, terms, caller)
        except FileRefused as exc:
            raise InvalidRequest("files", exc.rule, exc.message) from None
        except ContextFailed as exc:
            raise SandboxUnavailable(f"the context's sandbox failed: {exc}") from None
        log.info("code context %s opened", spec.context_id)
        return info

    async def info(self, context_id: str, caller: Caller) -> ContextInfo:
        return await self._sessions.info(context_id, caller)

    def list(self, caller: Caller | None = None) -> list[ContextInfo]:
        return self._sessions.list(caller)

    async def delete(self, context_id: str, caller: Caller) -> None:
        await self._sessions.close(context_id, caller)

    # --- operations ------------------------------------------------------------------

    async def execute(
        self,
        context_id: str,
        request: ContextExecuteRequest,
        caller: Caller,
        events: RunEvents | None = None,
    ) -> ContextExecuteResponse:
        """One call on the caller's context; ``events`` is told when it begins, then its
        output, results and violations as they happen (a streamed call).  Cancelled, the
        call is interrupted as at its timeout, and the context stays (placement.to_the_end)."""
        started = time.perf_counter()
        label = "error"
        try:
            response = await self._execute(context_id, request, caller, events)
            label = call_outcome(response)
            return response
        except ControllerError as exc:
            label = {InvalidRequest: "invalid", Busy: "busy", Gone: "gone"}.get(type(exc), "error")
            raise
        except asyncio.CancelledError:
            label = "disconnected"  # a streamed call's caller went away: the call ends
            raise
        finally:
            self.metrics.context_calls.labels(label, caller.name).inc()
            self.metrics.context_call_seconds.observe(time.perf_counter() - started)

    async def _execute(
        self,
        context_id: str,
        request: ContextExecuteRequest,
        caller: Caller,
        events: RunEvents | None,
    ) -> ContextExecuteResponse:
        settings = self.settings
        check_code(settings, request.code, request.stdin)
        limits = run_limits(settings, request.timeoutMs or settings.default_timeout_ms)
        call_id = new_execution_id()
        async with self._sessions.operating(context_id, caller) as context:
            if events is not None:
                events.started()
            call = ContextCall(
                request.code,
                request.stdin,
                limits,
                settings.context_interrupt_grace_ms,
                call_id,
                tuple(request.figureFormats),
            )
            ran = await to_the_end(context, call, events)
        stopped = (
            "interrupted, and its interpreter restarted when it had not stopped "
            f"{settings.context_interrupt_grace_ms} ms later (CONTEXT_INTERRUPT_GRACE_MS),"
            if ran.restarted
            else "interrupted (KeyboardInterrupt)"
        )
        response = response_for(call_id, ran.outcome, limits.timeout_ms, stopped)
        for violation in response.violations:
            self.metrics.violations.labels(violation.kind).inc()
        log.info(
            "context %s call %s exit=%s timed_out=%s restarted=%s duration_ms=%.1f",
            context_id,
            call_id,
            ran.outcome.exit_code,
            ran.outcome.timed_out,
            ran.restarted,
            ran.outcome.duration_ms,
        )
        return ContextExecuteResponse(**response.model_dump(), restarted=ran.restarted)

    async def restart(self, context_id: str, caller: Caller) -> ContextInfo:
        async with self._sessions.operating(context_id, caller) as context:
            await context.restart()
        return await self.info(context_id, caller)

    async def list_files(self, context_id: str, caller: Caller) -> ContextFiles:
        async with self._sessions.operating(context_id, caller) as context:
            files, complete = await context.list_files(self.settings.max_context_files)
        return ContextFiles(
            files=[ContextFile(path=p, size=s) for p, s in files], complete=complete
        )

    async def read_file(self, context_id: str, path: str, caller: Caller) -> bytes:
        relative = checked_path(path)
        most = self.settings.max_output_file_bytes
        async with self._sessions.operating(context_id, caller) as context:
            with refused_as_errors(context_id, "MAX_OUTPUT_FILE_BYTES"):
                return await context.read_file(relative, most)

    async def write_file(self, context_id: str, path: str, data: bytes, caller: Caller) -> None:
        relative = checked_path(path)
        most = self.settings.max_input_bytes
        if len(data) > most:
            raise InvalidRequest(
                "body", "max_bytes", f"at most {most} bytes per file (setting MAX_INPUT_BYTES)"
            )
        async with self._sessions.operating(context_id, caller) as context:
            with refused_as_errors(context_id, "MAX_INPUT_BYTES"):
                await context.write_file(relative, data)

    async def delete_file(self, context_id: str, path: str, caller: Caller) -> None:
        relative = checked_path(path)
        async with self._sessions.operating(context_id, caller) as context:
            with refused_as_errors(context_id, ""):
                await context.delete(relative)


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
