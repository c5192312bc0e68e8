"""Local placement: bubblewrap sandboxes on this host, started ahead of requests.

Each sandbox is started before a request needs it (the interpreter is already warm),
serves exactly one execution, and is then killed; the warm pool (controller.pool) keeps
``WARM_SANDBOXES`` ready.  The pool is what makes an execution cheaper than a cold
``python3 -c``.
"""

from __future__ import annotations

import asyncio
import platform
from pathlib import Path

from runner.contract import Job, Outcome
from runner.launch import SETUP_ERRORS, SandboxCommand, sandbox_command
from runner.supervisor import Sandbox, SandboxError
from runner.support import prepare_support_dir

from controller.errors import SandboxUnavailable
from controller.execution.backend import NOT_STARTED, SandboxCheck
from controller.execution.limits import sandbox_limits
from controller.execution.selftest import judge, self_test_job
from controller.pool import Backoff, PoolClosed, WarmPool
from controller.settings import Settings

READY_TIMEOUT_S = 10.0
START_BACKOFF = Backoff(first_s=1.0, max_s=30.0)


class LocalBackend:
    """Sandboxes as bubblewrap processes of this service, from a warm pool."""

    name = "local"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._command: SandboxCommand | None = None
        self._pool: WarmPool[Sandbox] = WarmPool(
            "sandbox",
            settings.warm_pool_size,
            start=self._new_sandbox,
            close=lambda sandbox: sandbox.close(),
            alive=lambda sandbox: sandbox.alive,
            backoff=START_BACKOFF,
            max_age_s=settings.warm_sandbox_max_age_s,
        )
        self.check = NOT_STARTED

    @property
    def warm_sandboxes(self) -> int:
        return self._pool.ready

    async def start(self) -> SandboxCheck:
        settings = self._settings
        python = settings.sandbox_interpreter
        try:
            support = await asyncio.to_thread(
                prepare_support_dir, Path(settings.state_dir) / "sandbox-support", python
            )
        except SETUP_ERRORS as exc:
            # Fail closed with the reason in /health, rather than a crash at start.
            self.check = SandboxCheck(ok=False, detail=f"cannot prepare the sandbox: {exc}")
            return self.check
        # The command depends only on settings; per-run limits travel in the job.
        self._command = sandbox_command(
            support,
            python,
            sandbox_limits(settings),
            extra_ro_paths=settings.sandbox_extra_ro_paths,
            preload=settings.sandbox_preload,
            host_ids=(settings.sandbox_uid, settings.sandbox_gid),
        )
        self.check = await self._self_test()
        if self.check.ok:
            self._pool.open()
        return self.check

    async def _self_test(self) -> SandboxCheck:
        try:
            sandbox = await self._new_sandbox()
            try:
                outcome = await self._run_in(sandbox, self_test_job(self._settings))
            finally:
                await sandbox.close()
        except SandboxError as exc:
            return SandboxCheck(ok=False, detail=str(exc))
        seccomp = (
            "on"
            if self._command and self._command.seccomp
            else f"off (no syscall table for {platform.machine()})"
        )
        return judge(outcome, f"bubblewrap sandbox verified; seccomp filter {seccomp}")

    async def _new_sandbox(self) -> Sandbox:
        if self._command is None:
            raise SandboxError("the backend was not started")
        sandbox = self._command.start()
        try:
            await sandbox.wait_ready(READY_TIMEOUT_S)
        except BaseException:  # failed or cancelled: a sandbox nobody owns must not linger
            await asyncio.shield(sandbox.close())
            raise
        return sandbox

    async def run(self, job: Job) -> Outcome:
        try:
            sandbox = await self._pool.take(READY_TIMEOUT_S)
        except TimeoutError as exc:
            raise SandboxUnavailable(
                f"no sandbox became ready within {READY_TIMEOUT_S:.0f}s"
            ) from exc
        except (SandboxError, PoolClosed) as exc:
            raise SandboxUnavailable(f"sandbox failed: {exc}") from exc
        try:
            return await self._run_in(sandbox, job)
        finally:
            self._pool.retire(sandbox)
            # Refill once this response is on its way: starting a sandbox costs CPU
            # that the execution in flight should not have to share.
            asyncio.get_running_loop().call_soon(self._pool.fill)

    async def _run_in(self, sandbox: Sandbox, job: Job) -> Outcome:
        try:
            return await sandbox.run(job)
        finally:
            sandbox.kill()  # now: the response does not wait for the teardown

    async def stop(self) -> None:
        await self._pool.stop()
