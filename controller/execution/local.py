"""Local placement: bubblewrap sandboxes on this host, started ahead of requests.

Each sandbox is started before a request needs it (the interpreter is already warm),
serves exactly one execution, and is then killed; the warm pool (controller.pool) keeps
``WARM_SANDBOXES`` ready.  The pool is what makes an execution cheaper than a cold
``python3 -c``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import secrets
import shutil
from dataclasses import replace
from pathlib import Path

from runner.cgroup import SANDBOX_TASKS, CgroupError, SandboxCgroups
from runner.contract import MIB, EventSink, Job, Outcome, RunLimits
from runner.egress import new_egress_dir, with_egress
from runner.launch import SETUP_ERRORS, SandboxCommand, sandbox_command
from runner.supervisor import Sandbox, SandboxError
from runner.support import prepare_support_dir

from controller.cgroups import PER_PROCESS_ONLY, open_cgroups
from controller.egress.ask import AskCallback, AskedOnce
from controller.egress.channel import EgressChannel
from controller.errors import SandboxUnavailable
from controller.execution.backend import NOT_STARTED, SandboxCheck
from controller.execution.limits import group_limits, sandbox_limits
from controller.execution.selftest import judge, self_test_job
from controller.pool import Backoff, PoolClosed, WarmPool
from controller.settings import Settings
from controller.uids import Lease, Quarantine, UidLeases
from controller.userns import explained
from sandbox_common.domains import DomainPolicy
from sandbox_common.egress_account import EgressAccount
from sandbox_common.egress_gate import EgressGate, EgressRules

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 10.0
START_BACKOFF = Backoff(first_s=1.0, max_s=30.0)


def nproc_backstop(limits: RunLimits) -> RunLimits:
    """``limits`` for a sandbox in its own cgroup: the cgroup's task limit (MAX_PROCESSES
    for the code) is the one that refuses, since its refusals are counted and reported,
    and RLIMIT_NPROC stays just above it as a backstop."""
    return replace(limits, max_processes=limits.max_processes + SANDBOX_TASKS + 1)


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
            close=self._close_sandbox,
            alive=lambda sandbox: sandbox.alive,
            backoff=START_BACKOFF,
            max_age_s=settings.warm_sandbox_max_age_s,
        )
        self.check = NOT_STARTED
        self._cgroups: SandboxCgroups | None = None
        self._limits = PER_PROCESS_ONLY
        self.warm_sandbox_mb = 0
        """What the self-test's sandbox held at its peak: what each warm one holds."""
        self._egress_root = Path(settings.state_dir) / "egress"
        self._egress_dirs: dict[Sandbox, Path] = {}
        # As root, every sandbox gets a uid and gid of its own, leased host-wide: the
        # kernel's per-user counters (inotify instances and watches, processes, pending
        # signals) are then one execution's alone, and no execution can exhaust another's.
        self._uids = (
            UidLeases("sandbox", settings.sandbox_uid, settings.sandbox_gid)
            if os.geteuid() == 0
            else None
        )
        self._leases: dict[Sandbox, Lease] = {}
        self._quarantine = Quarantine()
        self._ask = (
            AskCallback(str(settings.network_ask_url), settings.network_ask_timeout_ms)
            if settings.network_ask_url is not None
            else None
        )
        self._egress_rules = EgressRules(
            internal_hosts=settings.network_internal_hosts,
            reserved_ports=frozenset({settings.port}),
        )

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
            self.check = SandboxCheck(
                ok=False,
                detail=f"cannot prepare the sandbox under {settings.state_dir} (STATE_DIR): {exc}",
            )
            return self.check
        self._cgroups, limits = await asyncio.to_thread(open_cgroups, settings.state_dir, "")
        self._limits = limits
        log.log(logging.INFO if self._cgroups else logging.WARNING, "execution limits: %s", limits)
        if self._cgroups is None and settings.sandbox_cgroups == "required":
            self.check = SandboxCheck(
                ok=False, detail="SANDBOX_CGROUPS=required, and " + limits, limits=limits
            )
            return self.check
        egress = settings.network_ceiling.allows_anything
        if egress:
            try:  # a killed predecessor's sockets go: their sandboxes are gone too
                await asyncio.to_thread(self._reset_egress_root)
            except OSError as exc:
                self.check = SandboxCheck(
                    ok=False,
                    detail=f"cannot prepare {self._egress_root} (STATE_DIR) for the egress "
                    f"proxy: {exc}",
                )
                return self.check
        # The command depends only on settings; per-run limits travel in the job.
        self._command = sandbox_command(
            support,
            python,
            sandbox_limits(settings),
            extra_ro_paths=settings.sandbox_extra_ro_paths,
            preload=settings.sandbox_preload,
            egress=egress,
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
                await self._close_sandbox(sandbox)
        except SandboxError as exc:
            return SandboxCheck(ok=False, detail=explained(str(exc)), limits=self._limits)
        self.warm_sandbox_mb = -(-(outcome.max_rss_kb or 0) // 1024)  # rounded up
        seccomp = (
            "on"
            if self._command and self._command.seccomp
            else f"off (no syscall table for {platform.machine()})"
        )
        check = judge(
            outcome, f"bubblewrap sandbox verified; seccomp filter {seccomp}", self._limits
        )
        return check if check.ok else replace(check, detail=explained(check.detail))

    def _reset_egress_root(self) -> None:
        shutil.rmtree(self._egress_root, ignore_errors=True)
        self._egress_root.mkdir(mode=0o711, parents=True)
        self._egress_root.chmod(0o711)  # traversable, not listable, by the sandboxes' uid

    async def _close_sandbox(self, sandbox: Sandbox) -> None:
        gone = False
        try:
            gone = await sandbox.close()
        finally:
            directory = self._egress_dirs.pop(sandbox, None)
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)
            lease = self._leases.pop(sandbox, None)
            if lease is not None:
                if gone:  # every process of it gone: its uid may serve another
                    UidLeases.release(lease)
                else:
                    self._quarantine.hold(lease, sandbox.close, "a sandbox")

    def _lease(self) -> Lease | None:
        if self._uids is None:
            return None  # not root: sandboxes run as the service's own user
        lease = self._uids.acquire()
        if lease is None:
            raise SandboxError(
                f"all {self._uids.count} sandbox uids from {self._uids.first_uid} are in use "
                "on this host (setting SANDBOX_UID)"
            )
        return lease

    async def _new_sandbox(self) -> Sandbox:
        if self._command is None:
            raise SandboxError("the backend was not started")
        lease = self._lease()
        egress_dir = None
        try:
            if self._command.egress:
                egress_dir = new_egress_dir(self._egress_root, lease.gid if lease else None)
            ids = (lease.uid, lease.gid) if lease is not None else None
            sandbox = await self._start_sandbox(self._command, egress_dir, ids)
        except BaseException:
            if egress_dir is not None:
                shutil.rmtree(egress_dir, ignore_errors=True)
            if lease is not None:
                UidLeases.release(lease)
            raise
        if egress_dir is not None:
            self._egress_dirs[sandbox] = egress_dir
        if lease is not None:
            self._leases[sandbox] = lease
        return sandbox

    async def _start_sandbox(
        self, command: SandboxCommand, egress_dir: Path | None, ids: tuple[int, int] | None
    ) -> Sandbox:
        group = None
        if self._cgroups is not None:
            name = f"sb-{secrets.token_hex(6)}"
            try:
                group = await asyncio.to_thread(
                    self._cgroups.create, name, group_limits(self._settings)
                )
            except CgroupError as exc:
                raise SandboxError(f"cannot make the sandbox's cgroup: {exc}") from exc
        try:
            sandbox = command.start(group, str(egress_dir) if egress_dir else None, ids)
        except BaseException:
            if group is not None:
                await asyncio.to_thread(group.remove)
            raise
        try:
            await sandbox.wait_ready(READY_TIMEOUT_S)
        except BaseException:  # failed or cancelled: a sandbox nobody owns must not linger
            await asyncio.shield(sandbox.close())
            raise
        return sandbox

    async def _take(self, caller: str) -> Sandbox:
        try:
            return await self._pool.take(READY_TIMEOUT_S, caller)
        except TimeoutError as exc:
            raise SandboxUnavailable(
                f"no sandbox became ready within {READY_TIMEOUT_S:.0f}s"
            ) from exc
        except (SandboxError, PoolClosed) as exc:
            raise SandboxUnavailable(f"sandbox failed: {exc}") from exc

    async def run(self, job: Job, caller: str, events: EventSink | None = None) -> Outcome:
        sandbox = await self._take(caller)
        try:
            if job.network is None:
                return await self._run_in(sandbox, job, events)
            return await self._run_with_egress(sandbox, job, caller, events)
        finally:
            self._pool.retire(sandbox)
            # Refill once this response is on its way: starting a sandbox costs CPU
            # that the execution in flight should not have to share.
            asyncio.get_running_loop().call_soon(self._pool.fill)

    async def lend(self, caller: str) -> Sandbox:
        """A warm sandbox that will serve a code context (runner.context) until it is
        handed to ``retire``; the service's stop kills it, as every sandbox."""
        sandbox = await self._take(caller)
        asyncio.get_running_loop().call_soon(self._pool.fill)
        return sandbox

    def retire(self, sandbox: Sandbox) -> None:
        """Kill a lent sandbox and release what it holds (in the background)."""
        self._pool.retire(sandbox)

    def run_limits(self, limits: RunLimits) -> RunLimits:
        """``limits`` as a sandbox of this backend applies them (runner.contract)."""
        return nproc_backstop(limits) if self._cgroups is not None else limits

    async def open_egress(
        self, sandbox: Sandbox, policy: DomainPolicy, caller: str, asker_id: str
    ) -> EgressChannel:
        """The sandbox's egress socket, served with ``policy`` and a fresh account (the
        gate's ``account``: its refusals become ``network`` violations); the caller
        closes it.  ``asker_id`` is what the ask-callback is told (an execution's id)."""
        directory = self._egress_dirs.get(sandbox)
        if directory is None:
            raise SandboxUnavailable("the sandbox has no egress directory (no domain allowed)")
        ask = AskedOnce(self._ask, asker_id) if self._ask is not None else None
        channel = EgressChannel(
            EgressGate(policy, self._egress_rules, self.egress_account(), ask, owner=caller),
            self._settings.network_max_connections,
        )
        try:
            lease = self._leases.get(sandbox)
            await channel.open(directory, lease.gid if lease is not None else None)
        except OSError as exc:
            raise SandboxUnavailable(f"cannot open the execution's egress proxy: {exc}") from exc
        return channel

    def egress_account(self) -> EgressAccount:
        """One run's account at the egress proxy (its caps: NETWORK_MAX_*)."""
        settings = self._settings
        return EgressAccount(settings.network_max_connections, settings.network_max_mb * MIB)

    def new_run(self, channel: EgressChannel, run_id: str) -> EgressAccount:
        """A code context's next call on its open channel: an account of its own (its
        caps and refusals), and the ask-callback told this call's id, asked afresh."""
        gate = channel.gate
        gate.account = self.egress_account()
        if gate.ask is not None and self._ask is not None:
            gate.ask = AskedOnce(self._ask, run_id)
        return gate.account

    async def _run_with_egress(
        self, sandbox: Sandbox, job: Job, caller: str, events: EventSink | None = None
    ) -> Outcome:
        """Run ``job`` with its own egress channel open; the proxy's refusals become the
        execution's ``network`` violations, whatever program made the connection."""
        assert job.network is not None
        channel = await self.open_egress(sandbox, job.network, caller, job.execution_id)
        try:
            outcome = await self._run_in(sandbox, job, events)
        finally:
            await channel.close()
        assert channel.gate.account is not None
        return with_egress(outcome, channel.gate.account)

    async def _run_in(self, sandbox: Sandbox, job: Job, events: EventSink | None = None) -> Outcome:
        if self._cgroups is not None:
            job = replace(job, limits=nproc_backstop(job.limits))
        try:
            return await sandbox.run(job, events)
        finally:
            sandbox.kill()  # now: the response does not wait for the teardown

    async def stop(self) -> None:
        await self._pool.stop()
        await self._quarantine.stop()
        if self._ask is not None:
            await self._ask.close()
        if self._command is not None and self._command.egress:
            await asyncio.to_thread(shutil.rmtree, self._egress_root, True)
        if self._cgroups is not None:
            try:
                await asyncio.to_thread(self._cgroups.close)
            except CgroupError as exc:
                log.warning("%s (reaped at the next start)", exc)
