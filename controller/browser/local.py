"""Local placement: a warm pool of browser agent processes on this host.

A session takes an agent whose Chromium is already running (and whose desktop tab is
already open), so creating a session costs an HTTP call, not a browser launch; a
background task starts a replacement at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from pathlib import Path

from controller.browser.backend import AgentHandle
from controller.browser.process import AgentProcess, write_launcher
from controller.browser.uids import Lease, UidLeases
from controller.errors import BrowserUnavailable
from controller.settings import Settings

log = logging.getLogger(__name__)

FAILURE_BACKOFF_S = 5.0
MAX_FAILURE_BACKOFF_S = 120.0


class LocalSessionBackend:
    """Agents as processes of this service, ``BROWSER_WARM_AGENTS`` of them started ahead."""

    name = "local"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._root = Path(settings.state_dir) / "browser"
        self._ready: list[AgentProcess] = []
        self._starting = 0
        self._agents: dict[str, AgentProcess] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self.device_names: list[str] = []
        self._failures = 0
        self._launcher: Path | None = None
        # As root, every agent's Chromium gets a uid and gid of its own, leased host-wide,
        # so no page can see, signal or trace another session's browser or read its files.
        self._uids = (
            UidLeases(settings.browser_uid, settings.browser_gid) if os.geteuid() == 0 else None
        )
        self._leases: dict[str, Lease] = {}

    async def start(self) -> None:
        # Directories of agents of a previous run (killed with it) are removed first.
        await asyncio.to_thread(shutil.rmtree, self._root, True)
        self._root.mkdir(parents=True, exist_ok=True)
        # Traversable, not listable: each agent's uid reaches only its own 0700 directory.
        os.chmod(self._root, 0o711)  # noqa: S103
        if self._uids is not None:
            self._launcher = write_launcher(self._root / "bin")
        self._top_up()

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _top_up(self) -> None:
        if self._stopping:
            return
        for _ in range(self._settings.browser_warm_agents - len(self._ready) - self._starting):
            self._starting += 1
            self._track(asyncio.create_task(self._warm_one()))

    async def _warm_one(self) -> None:
        try:
            agent = await self._start_agent()
        except BrowserUnavailable as exc:
            # Back off, longer after each failure in a row (e.g. no Chromium installed),
            # so a broken host does not spend its CPU on launches; then try again.
            self._failures += 1
            pause = min(FAILURE_BACKOFF_S * 2 ** (self._failures - 1), MAX_FAILURE_BACKOFF_S)
            log.warning("warm browser agent failed to start (retry in %.0fs): %s", pause, exc)
            await asyncio.sleep(pause)
            self._starting -= 1
            self._top_up()
            return
        self._failures = 0
        self._starting -= 1
        if self._stopping:
            await self._close(agent)
            return
        self._ready.append(agent)

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
        try:
            agent = AgentProcess(self._settings, self._root, ids, self._launcher)
        except BaseException:
            if lease is not None:
                UidLeases.release(lease)
            raise
        self._agents[agent.agent_id] = agent
        if lease is not None:
            self._leases[agent.agent_id] = lease
        try:
            await agent.wait_ready()
        except BrowserUnavailable:
            await self._close(agent)
            raise
        except asyncio.CancelledError:  # the caller went away: the agent must not linger
            self._track(asyncio.create_task(self._close(agent)))
            raise
        self.device_names = agent.device_names or self.device_names
        return agent

    async def acquire(self) -> AgentHandle:
        if self._stopping:
            raise BrowserUnavailable("the service is shutting down")
        agent = None
        while self._ready:
            candidate = self._ready.pop(0)
            if candidate.alive:
                agent = candidate
                break
            self._track(asyncio.create_task(self._close(candidate)))
        if agent is None:  # the pool is empty: this session pays for a browser launch
            agent = await self._start_agent()
        self._top_up()
        return agent.handle()

    @property
    def warm_agents(self) -> int:
        return sum(1 for agent in self._ready if agent.alive)

    def give_back(self, handle: AgentHandle) -> None:
        agent = self._agents.get(handle.agent_id)
        if agent is None:
            return
        if agent.alive and len(self._ready) < self._settings.browser_warm_agents:
            self._ready.insert(0, agent)
        else:  # a replacement is already warm: do not keep more than the pool's size
            self._track(asyncio.create_task(self._close(agent)))

    async def release(self, handle: AgentHandle) -> None:
        agent = self._agents.get(handle.agent_id)
        if agent is not None:
            await self._close(agent)

    def alive(self, handle: AgentHandle) -> bool:
        agent = self._agents.get(handle.agent_id)
        return agent is not None and agent.alive

    async def _close(self, agent: AgentProcess) -> None:
        try:
            await agent.close()
        finally:
            self._agents.pop(agent.agent_id, None)
            lease = self._leases.pop(agent.agent_id, None)
            if lease is not None:
                UidLeases.release(lease)

    async def stop(self) -> None:
        self._stopping = True
        for task in list(self._tasks):
            task.cancel()
        agents = list(self._agents.values())
        for agent in agents:
            agent.kill()
        await asyncio.gather(*(self._close(a) for a in agents), return_exceptions=True)
        self._ready.clear()
