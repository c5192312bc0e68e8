"""The execute flow: request -> job -> admission -> backend -> response -> file delivery."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
import uuid

import httpx
from runner.contract import InputFile, Job, Outcome

from controller.budget import MemoryBudget
from controller.errors import ControllerError, InvalidRequest, Overloaded, SandboxUnavailable
from controller.execution import delivery
from controller.execution.admission import Admission
from controller.execution.backend import ExecutionBackend, SandboxCheck
from controller.execution.events import RunEvents
from controller.execution.limits import (
    check_code,
    check_input_bytes,
    harvest_limits,
    run_limits,
    sandbox_limits,
)
from controller.execution.models import ExecuteRequest, ExecuteResponse
from controller.execution.results import response_for
from controller.keys import Caller
from controller.metrics import Metrics
from controller.network import execution_policy
from controller.settings import Settings
from controller.uploads.policy import UploadPolicy
from controller.uploads.transport import GuardedTransport, check_target

log = logging.getLogger(__name__)


REFUSALS: dict[type[ControllerError], str] = {
    InvalidRequest: "invalid",
    Overloaded: "overloaded",
    SandboxUnavailable: "unavailable",
}
"""The outcome label of an execution refused before or instead of running."""


def outcome_of(response: ExecuteResponse) -> str:
    if response.timedOut:
        return "timed_out"
    return "exited" if response.exitCode == 0 else "failed"


def new_execution_id() -> str:
    return "ex-" + uuid.uuid4().hex[:20]


class ExecutionService:
    """Validated requests in, responses out; owns admission in front of the backend."""

    def __init__(
        self,
        settings: Settings,
        backend: ExecutionBackend,
        budget: MemoryBudget | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self._backend = backend
        self.admission = Admission(
            settings.max_concurrent_executions,
            settings.max_queued_executions,
            budget,
            settings.memory_limit_mb,
        )
        self.upload_policy = UploadPolicy(settings.upload_allowed_hosts)
        # Loading the system's certificates costs milliseconds: once, for every upload.
        self._tls = ssl.create_default_context()

    @property
    def backend_name(self) -> str:
        return self._backend.name

    @property
    def check(self) -> SandboxCheck:
        return self._backend.check

    @property
    def warm_sandboxes(self) -> int:
        return self._backend.warm_sandboxes

    async def start(self) -> None:
        check = await self._backend.start()
        budget = self.admission.budget
        if budget is not None and check.ok:
            # The warm sandboxes hold what one measured at start, all the time.
            each = self._backend.warm_sandbox_mb
            want = each * self.settings.warm_pool_size
            room = budget.free_mb - self.settings.memory_limit_mb
            if want > room:
                log.warning(
                    "the memory budget (%d MiB) cannot hold %d warm sandboxes of %d MiB beside "
                    "one execution: counting %d MiB for them (setting MEMORY_BUDGET_MB)",
                    budget.total_mb,
                    self.settings.warm_pool_size,
                    each,
                    max(room, 0),
                )
                want = max(room, 0)
            budget.hold(want, "the warm sandboxes")
            log.info(
                "memory budget %d MiB: executions %d MiB each, warm sandboxes %d MiB each",
                budget.total_mb,
                self.settings.memory_limit_mb,
                each,
            )
        if check.ok:
            log.info("sandbox self-test passed: %s", check.detail)
        else:
            # Fail closed: the service answers, /health says why, /execute refuses (503).
            log.error("sandbox self-test FAILED, executions are refused: %s", check.detail)

    async def stop(self) -> None:
        await self._backend.stop()

    def _check_sizes(self, request: ExecuteRequest) -> None:
        check_code(self.settings, request.code, request.stdin)
        check_input_bytes(self.settings, sum(len(f.data) for f in request.files))

    async def _check_upload_target(self, request: ExecuteRequest, caller: Caller) -> None:
        if request.fileUploadUrl is None:
            return
        url = httpx.URL(str(request.fileUploadUrl))
        refusal = await check_target(self.upload_policy, url, caller.name)
        if refusal:
            raise InvalidRequest("fileUploadUrl", "upload_target", refusal)

    def job_for(self, request: ExecuteRequest) -> Job:
        settings = self.settings
        return Job(
            execution_id=new_execution_id(),
            code=request.code,
            stdin=request.stdin,
            files=tuple(InputFile(f.path, f.data) for f in request.files),
            sandbox=sandbox_limits(settings),
            limits=run_limits(settings, request.timeoutMs or settings.default_timeout_ms),
            harvest=harvest_limits(settings),
            network=execution_policy(settings.network_ceiling, request.network),
            figures=tuple(request.figureFormats),
        )

    async def execute(
        self, request: ExecuteRequest, caller: Caller, events: RunEvents | None = None
    ) -> ExecuteResponse:
        """Run ``request`` for ``caller``, within its limits and the deployment's;
        ``events`` is told when it begins, then its output, results and violations as
        they happen (a streamed execution).  Cancelled, the run ends at once."""
        started = time.perf_counter()
        outcome_label = "error"
        try:
            response = await self._execute(request, caller, started, events)
            outcome_label = outcome_of(response)
            return response
        except ControllerError as exc:
            outcome_label = REFUSALS.get(type(exc), "error")
            raise
        except asyncio.CancelledError:
            outcome_label = "disconnected"  # a streamed execution's caller went away
            raise
        finally:
            metrics = self.metrics
            metrics.executions.labels(outcome_label, caller.name).inc()
            metrics.total_seconds.observe(time.perf_counter() - started)

    async def _execute(
        self, request: ExecuteRequest, caller: Caller, started: float, events: RunEvents | None
    ) -> ExecuteResponse:
        if not self.check.ok:  # fail closed, whatever the backend
            raise SandboxUnavailable(f"sandbox unavailable: {self.check.detail}")
        self._check_sizes(request)
        await self._check_upload_target(request, caller)  # refused before anything runs
        job = self.job_for(request)
        metrics = self.metrics
        # Delivery is part of the execution: its uploads hold the caller's slot, so a slow
        # file service slows its own caller, and nobody else's.
        async with self.admission.slot(caller):
            slotted = time.perf_counter()
            metrics.queue_seconds.observe(slotted - started)
            if events is not None:
                events.started()
            outcome = await self._backend.run(job, caller.name, events)
            metrics.run_seconds.observe(time.perf_counter() - slotted)
            if outcome.setup_error:
                raise InvalidRequest("files", "writable", outcome.setup_error)
            response = response_for(job.execution_id, outcome, job.limits.timeout_ms)
            # One line per execution for operators: outcome and sizes, never code or output.
            log.info(
                "execution %s exit=%s signal=%s timed_out=%s duration_ms=%.1f violations=%d "
                "files=%d",
                job.execution_id,
                outcome.exit_code,
                outcome.signal,
                outcome.timed_out,
                outcome.duration_ms,
                len(response.violations),
                len(outcome.harvested.files),
            )
            for violation in response.violations:
                metrics.violations.labels(violation.kind).inc()
            await self._deliver(request, outcome, response, caller)
        return response

    async def _deliver(
        self, request: ExecuteRequest, outcome: Outcome, response: ExecuteResponse, caller: Caller
    ) -> None:
        """The files the run wrote: inline, or sent to the caller's file service."""
        settings = self.settings
        if request.fileUploadUrl is not None:
            # A pool of this execution's own: a file service that holds its connections
            # holds no other caller's.
            transport = GuardedTransport(
                self.upload_policy, settings.upload_concurrency, caller.name, self._tls
            )
            async with httpx.AsyncClient(transport=transport, follow_redirects=False) as client:
                response.uploads, response.skippedFiles = await delivery.upload(
                    outcome.harvested,
                    client,
                    str(request.fileUploadUrl),
                    request.uploadToken,
                    request.public,
                    settings.upload_concurrency,
                    settings.upload_timeout_s,
                )
            for upload in response.uploads:
                # A status code, or "error": the error's text is the file service's own
                # words (one label value each would never end).
                status = str(upload.status) if isinstance(upload.status, int) else "error"
                self.metrics.uploads.labels(status).inc()
        else:
            files, response.skippedFiles = delivery.inline(
                outcome.harvested, settings.max_inline_bytes
            )
            response.set_inline(files)
