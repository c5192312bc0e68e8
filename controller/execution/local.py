"""Local placement: bubblewrap sandboxes on this host, started ahead of requests.

Each sandbox is started before a request needs it (the interpreter is already warm),
serves exactly one execution, and is then killed; a background task keeps the pool full.
The pool is what makes an execution cheaper than a cold ``python3 -c``.
"""

from __future__ import annotations

import asyncio
import logging
import platform
import subprocess
import time
from pathlib import Path

from runner.launch import SandboxCommand, sandbox_command
from runner.policy import HIDDEN_PATHS
from runner.supervisor import Outcome, Sandbox, SandboxError
from runner.support import prepare_support_dir

from controller.errors import SandboxUnavailable
from controller.execution.backend import Job, SandboxCheck
from controller.execution.limits import sandbox_limits
from controller.settings import Settings

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 10.0
SELF_TEST_CODE = "import os, socket; print(os.getuid(), len(socket.if_nameindex()))"
SELF_TEST_EXPECTED = b"1000 1\n"  # the sandbox uid, and only the loopback interface


class LocalBackend:
    """Sandboxes as bubblewrap processes of this service, from a warm pool."""

    name = "local"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._pool_size = settings.warm_pool_size
        self._ready: asyncio.Queue[Sandbox] = asyncio.Queue()
        self._starting = 0
        self._live: set[Sandbox] = set()
        self._closing: set[asyncio.Task[None]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._command: SandboxCommand | None = None
        self._stopping = False
        self.check = SandboxCheck(ok=False, detail="not started")

    @property
    def warm_sandboxes(self) -> int:
        return self._ready.qsize()

    async def start(self) -> SandboxCheck:
        settings = self._settings
        python = settings.sandbox_interpreter
        try:
            support = prepare_support_dir(Path(settings.state_dir) / "sandbox-support", python)
        except (OSError, RuntimeError, subprocess.SubprocessError, ValueError) as exc:
            # Fail closed with the reason in /health, rather than a crash at start.
            self.check = SandboxCheck(ok=False, detail=f"cannot prepare the sandbox: {exc}")
            return self.check
        # The command depends only on settings; per-request limits travel in the job.
        self._command = sandbox_command(
            support,
            python,
            sandbox_limits(settings, settings.default_timeout_ms),
            extra_ro_paths=settings.sandbox_extra_ro_paths,
            preload=settings.sandbox_preload,
            host_ids=(settings.sandbox_uid, settings.sandbox_gid),
        )
        self.check = await self._self_test()
        if self.check.ok:
            self._top_up()
            renewal = asyncio.create_task(self._renew_old_sandboxes(), name="sandbox-renewal")
            self._tasks.add(renewal)
            renewal.add_done_callback(self._tasks.discard)
        return self.check

    async def _self_test(self) -> SandboxCheck:
        """Fail closed: unless a real sandbox proves its isolation, no code runs."""
        job = Job(
            "self-test", SELF_TEST_CODE, None, sandbox_limits(self._settings, timeout_ms=10_000)
        )
        try:
            outcome = await self._run_in(await self._new_sandbox(), job)
        except SandboxError as exc:
            return SandboxCheck(ok=False, detail=str(exc))
        if outcome.exit_code != 0 or outcome.stdout != SELF_TEST_EXPECTED:
            detail = (outcome.stderr or outcome.stdout).decode("utf-8", "replace")[-500:]
            return SandboxCheck(ok=False, detail=f"sandbox self-test failed: {detail.strip()}")
        seccomp = (
            "on"
            if self._command and self._command.seccomp
            else f"off (no syscall table for {platform.machine()})"
        )
        return SandboxCheck(
            ok=True, detail=f"bubblewrap sandbox verified; seccomp filter {seccomp}"
        )

    async def _new_sandbox(self) -> Sandbox:
        if self._command is None:
            raise SandboxError("the backend was not started")
        sandbox = self._command.start()
        self._live.add(sandbox)
        try:
            await sandbox.wait_ready(READY_TIMEOUT_S)
        except SandboxError:
            self._retire(sandbox)
            raise
        return sandbox

    def _top_up(self) -> None:
        """Start as many sandboxes as the pool lacks; each joins the pool when it is warm."""
        if self._stopping:
            return
        for _ in range(self._pool_size - self._ready.qsize() - self._starting):
            self._starting += 1
            task = asyncio.create_task(self._warm_one())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _warm_one(self) -> None:
        try:
            sandbox = await self._new_sandbox()
        except SandboxError as exc:
            log.warning("warm sandbox failed to start: %s", exc)
            await asyncio.sleep(1)  # back off before the pool tries again
            self._starting -= 1
            self._top_up()
            return
        self._starting -= 1
        self._ready.put_nowait(sandbox)

    async def _take_sandbox(self) -> Sandbox:
        """A warm sandbox from the pool; when it is empty, the next one to become warm."""
        while True:
            if self._ready.empty() and self._starting == 0:
                return await self._new_sandbox()  # no pool (WARM_SANDBOXES=0)
            candidate = await asyncio.wait_for(self._ready.get(), READY_TIMEOUT_S)
            if candidate.alive and not self._expired(candidate):
                return candidate
            self._retire(candidate)

    def _expired(self, sandbox: Sandbox) -> bool:
        return time.monotonic() - sandbox.started_at > self._settings.warm_sandbox_max_age_s

    async def _renew_old_sandboxes(self) -> None:
        """Every warm sandbox has a deadline: the idle ones past it are replaced."""
        period = self._settings.warm_sandbox_max_age_s / 4
        while True:
            await asyncio.sleep(period)
            for _ in range(self._ready.qsize()):
                sandbox = self._ready.get_nowait()
                if sandbox.alive and not self._expired(sandbox):
                    self._ready.put_nowait(sandbox)
                else:
                    self._retire(sandbox)
            self._top_up()

    async def run(self, job: Job) -> Outcome:
        if not self.check.ok:
            raise SandboxUnavailable(f"sandbox unavailable: {self.check.detail}")
        try:
            sandbox = await self._take_sandbox()
        except TimeoutError as exc:
            raise SandboxUnavailable(
                f"no sandbox became ready within {READY_TIMEOUT_S:.0f}s"
            ) from exc
        except SandboxError as exc:
            raise SandboxUnavailable(f"sandbox failed: {exc}") from exc
        try:
            return await self._run_in(sandbox, job)
        finally:
            # Replace it once this response is on its way: starting a sandbox costs CPU
            # that the execution in flight should not have to share.
            asyncio.get_running_loop().call_soon(self._top_up)

    async def _run_in(self, sandbox: Sandbox, job: Job) -> Outcome:
        payload = {
            "code": job.code,
            "stdin": job.stdin,
            "files": list(job.files),
            "hiddenPaths": list(HIDDEN_PATHS),
            "visiblePaths": list(self._command.visible_paths if self._command else ()),
        }
        try:
            return await sandbox.run(payload, job.limits, job.harvest)
        finally:
            self._retire(sandbox)

    def _retire(self, sandbox: Sandbox) -> None:
        """Kill now, reap in the background: the response does not wait for the teardown."""
        sandbox.kill()
        task = asyncio.create_task(sandbox.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        task.add_done_callback(lambda _: self._live.discard(sandbox))

    async def stop(self) -> None:
        self._stopping = True
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)
        for sandbox in list(self._live):
            self._retire(sandbox)
        if self._closing:
            await asyncio.wait(set(self._closing), timeout=5)
