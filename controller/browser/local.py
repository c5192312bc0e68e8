"""Local placement: a warm pool of browser agent processes on this host.

A session takes an agent whose Chromium is already running (and whose desktop tab is
already open), so creating a session costs an HTTP call, not a browser launch; the warm
pool (controller.pool) starts a replacement at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
from pathlib import Path

from runner.bwrap import BWRAP
from runner.cgroup import CgroupError, GroupLimits, SandboxCgroups
from runner.contract import MIB
from runner.supervisor import remove_when_empty

from controller.browser.backend import AgentHandle
from controller.browser.process import SETPRIV, SOCAT, AgentProcess, agent_code
from controller.cgroups import PER_PROCESS_ONLY, open_cgroups
from controller.errors import BrowserUnavailable
from controller.pool import Backoff, PoolClosed, WarmPool
from controller.settings import Settings
from controller.uids import Lease, Quarantine, UidLeases

log = logging.getLogger(__name__)

START_BACKOFF = Backoff(first_s=5.0, max_s=120.0)
AGENT_TASKS = 2048
"""Tasks of one agent's cgroup: Chromium runs a few hundred threads; a fork bomb in a
page's renderer cannot (renderers cannot fork) but this bounds any that could."""
TAKE_TIMEOUT_S = 35.0
"""Longer than an agent's own start-up deadline (process.READY_TIMEOUT_S)."""


def agent_limits(settings: Settings) -> GroupLimits:
    """One agent's cgroup: BROWSER_MEMORY_MB for the agent, its driver and its Chromium
    together (a browser pod's limit, the same figure); Chromium's many threads are
    bounded, its CPU is a fair share."""
    return GroupLimits(settings.browser_memory_mb * MIB, AGENT_TASKS, None)


class LocalSessionBackend:
    """Agents as processes of this service, ``BROWSER_WARM_AGENTS`` of them started ahead."""

    name = "local"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._root = Path(settings.state_dir) / "browser"
        self._agents: dict[str, AgentProcess] = {}
        self.device_names: list[str] = []
        self._code_dir = self._root / "app"
        self._cgroups: SandboxCgroups | None = None
        self.limits = PER_PROCESS_ONLY
        """How each agent is bounded (its own cgroup of BROWSER_MEMORY_MB, or why not)."""
        self._unavailable: str | None = None
        """Why no agent can start at all (set at start), for every creation's 503."""
        # As root, every agent (and its Chromium) gets a uid and gid of its own, leased
        # host-wide, so no page can see, signal or trace another session's browser or
        # read its files, and none of them runs as root.
        self._uids = (
            UidLeases("browser", settings.browser_uid, settings.browser_gid)
            if os.geteuid() == 0
            else None
        )
        self._leases: dict[str, Lease] = {}
        self._quarantine = Quarantine()
        self._pool: WarmPool[AgentProcess] = WarmPool(
            "browser agent",
            settings.browser_warm_agents,
            start=self._start_agent,
            close=self._close,
            alive=lambda agent: agent.alive,
            backoff=START_BACKOFF,
        )

    async def start(self) -> None:
        # Directories of agents of a previous run (killed with it) are removed first.
        await asyncio.to_thread(shutil.rmtree, self._root, True)
        try:
            self._root.mkdir(parents=True, exist_ok=True)
            # Traversable, not listable: each agent's uid reaches only its own 0700 directory.
            os.chmod(self._root, 0o711)  # noqa: S103
            (self._root / "logs").mkdir(mode=0o700)
            (self._root / "bin").mkdir()
            # Chmod, not mkdir's mode, which the service's umask (077 under make run's
            # first start, or a unit's UMask) would narrow: every agent's uid reads it.
            (self._root / "bin").chmod(0o755)
            await asyncio.to_thread(agent_code, self._code_dir)
        except OSError as exc:
            # A full or read-only disk: browser sessions answer 503 saying so, executions
            # go on (they need no disk), and a restart retries.
            self._unavailable = self._disk_refusal(exc)
            log.error("browser sessions unavailable: %s", self._unavailable)
            return
        self._unavailable = await self._cannot_run()
        if self._unavailable is not None:
            log.error("browser sessions unavailable: %s", self._unavailable)
            return
        self._cgroups, self.limits = await asyncio.to_thread(
            open_cgroups, self._settings.state_dir, "-browsers"
        )
        log.info("browser agents' limits: %s", self.limits)
        self._pool.open()

    async def _cannot_run(self) -> str | None:
        """Why no agent could start here, found once at start rather than in each
        agent's log: what the launcher needs, and the interpreter as the agents' uid."""
        settings = self._settings
        if settings.browser_namespaces:
            for tool in (BWRAP, SOCAT):
                if not os.access(tool, os.X_OK):
                    return (
                        f"{tool} is missing: each Chromium runs in namespaces of its own "
                        "(install bubblewrap and socat, or set BROWSER_NAMESPACES=false)"
                    )
        python = settings.browser_interpreter
        argv = [python, "-I", "-c", "import playwright, pydantic, starlette, uvicorn"]
        lease = self._uids.acquire() if self._uids is not None else None
        if lease is not None:
            argv = [SETPRIV, "--reuid", str(lease.uid), "--regid", str(lease.gid)]
            argv += ["--clear-groups", "--", python, "-I", "-c", argv[-1]]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                cwd=self._code_dir,
                env={"PATH": "/usr/bin:/bin"},
            )
            _, err = await proc.communicate()
        except OSError as exc:
            return f"cannot run BROWSER_PYTHON {python}: {exc}"
        finally:
            if lease is not None:
                UidLeases.release(lease)
        if proc.returncode != 0:
            last = (err.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
            who = "the browsers' uid" if lease is not None else "the service"
            return (
                f"BROWSER_PYTHON {python} cannot import the agent's packages as {who}: "
                f"{last} (run `make browser-env`, or point BROWSER_PYTHON at an interpreter "
                "with browser-image/requirements.txt that every user can read)"
            )
        return None

    def _disk_refusal(self, exc: OSError) -> str:
        return (
            f"cannot write the browser agents' files under {self._root} (STATE_DIR): "
            f"{exc.strerror or exc}"
        )

    async def _start_agent(self) -> AgentProcess:
        lease = None
        if self._uids is not None:
            lease = self._uids.acquire()
            if lease is None:
                raise BrowserUnavailable(
                    f"all {self._uids.count} browser uids from {self._uids.first_uid} are in "
                    "use on this host (setting BROWSER_UID)"
                )
        ids = (lease.uid, lease.gid) if lease is not None else None
        group = None
        try:
            if self._cgroups is not None:
                group = await asyncio.to_thread(
                    self._cgroups.create, f"br-{secrets.token_hex(6)}", agent_limits(self._settings)
                )
            agent = AgentProcess(self._settings, self._root, self._code_dir, ids, group)
        except BaseException as exc:
            if lease is not None:
                UidLeases.release(lease)
            if group is not None:
                await asyncio.shield(remove_when_empty(group))
            if isinstance(exc, CgroupError):
                raise BrowserUnavailable(f"cannot make a browser agent's cgroup: {exc}") from exc
            if isinstance(exc, OSError):
                raise BrowserUnavailable(self._disk_refusal(exc)) from exc
            raise
        self._agents[agent.agent_id] = agent
        if lease is not None:
            self._leases[agent.agent_id] = lease
        try:
            await agent.wait_ready()
        except BaseException:  # failed, or the caller went away: the agent must not linger
            await asyncio.shield(self._close(agent))
            raise
        self.device_names = agent.device_names or self.device_names
        return agent

    async def acquire(self) -> AgentHandle:
        if self._unavailable is not None:
            raise BrowserUnavailable(self._unavailable)
        try:
            agent = await self._pool.take(TAKE_TIMEOUT_S)
        except PoolClosed as exc:
            raise BrowserUnavailable(str(exc)) from None
        except TimeoutError:
            raise BrowserUnavailable(
                f"no browser agent became ready within {TAKE_TIMEOUT_S:.0f}s"
            ) from None
        self._pool.fill()
        return agent.handle()

    @property
    def warm_agents(self) -> int:
        return self._pool.ready

    def give_back(self, handle: AgentHandle) -> None:
        agent = self._agents.get(handle.agent_id)
        if agent is not None:
            self._pool.give_back(agent)

    async def release(self, handle: AgentHandle) -> None:
        agent = self._agents.get(handle.agent_id)
        if agent is not None:
            await self._pool.discard(agent)

    def alive(self, handle: AgentHandle) -> bool:
        agent = self._agents.get(handle.agent_id)
        return agent is not None and agent.alive

    async def _close(self, agent: AgentProcess) -> None:
        gone = False
        try:
            gone = await agent.close()
        finally:
            self._agents.pop(agent.agent_id, None)
            lease = self._leases.pop(agent.agent_id, None)
            if lease is not None:
                if gone:  # nothing runs as its uid any more: it may serve another agent
                    UidLeases.release(lease)
                else:
                    self._quarantine.hold(lease, agent.close, "a browser agent")

    async def stop(self) -> None:
        await self._pool.stop()
        await self._quarantine.stop()
        if self._cgroups is not None:
            try:
                await asyncio.to_thread(self._cgroups.close)
            except CgroupError as exc:
                log.warning("%s (reaped at the next start)", exc)
