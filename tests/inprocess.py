"""The in-process tier's harness: the real app, driven through ``httpx.ASGITransport``.

Only what stands behind a process or HTTP boundary is faked: the execution backend (a
sandbox process or a pod), the session backend (an agent process or pod) and the
agents' HTTP answers (``httpx.MockTransport``).  Everything in front of them (the
middleware, routing, validation, admission, the session registry and its reaper, the
error mapping) is the product's own code; the integration and e2e tiers cover the
real backends.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from browser_agent.protocol import ConfigureRequest
from fastapi import FastAPI
from runner.contract import EventSink, Job, Outcome, OutputChunk

from controller.app import create_app
from controller.browser.backend import AgentHandle
from controller.errors import BrowserUnavailable
from controller.execution.backend import SandboxCheck
from controller.settings import Settings

TOKEN = "in-process-" + secrets.token_hex(16)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def settings(state_dir: Path, **overrides: Any) -> Settings:
    return Settings(auth_token=TOKEN, state_dir=state_dir, **overrides)


def printed(job: Job) -> Outcome:
    """What the fake sandbox does with a job: prints its code back, exits 0."""
    return Outcome(
        exit_code=0,
        signal=None,
        timed_out=False,
        stdout=job.code.encode(),
        stderr=b"",
        stdout_truncated=False,
        stderr_truncated=False,
        duration_ms=1.0,
    )


@dataclass
class FakeExecutionBackend:
    """An ExecutionBackend whose sandbox is a function; ``gate`` holds every run until set."""

    outcome: Callable[[Job], Outcome] = printed
    start_check: SandboxCheck = field(default_factory=lambda: SandboxCheck(True, "fake sandbox"))
    gate: asyncio.Event | None = None
    name: str = "fake"
    jobs: list[Job] = field(default_factory=list)
    running: int = 0
    stopped: bool = False
    check: SandboxCheck = field(default_factory=lambda: SandboxCheck(False, "not started"))

    warm_sandbox_mb: int = 0

    @property
    def warm_sandboxes(self) -> int:
        return 3

    async def start(self) -> SandboxCheck:
        self.check = self.start_check
        return self.check

    async def stop(self) -> None:
        self.stopped = True

    async def run(self, job: Job, caller: str, events: EventSink | None = None) -> Outcome:
        """The fake's outcome; its output and results told to ``events`` first, as a
        sandbox tells them while it runs."""
        self.jobs.append(job)
        self.running += 1
        try:
            if self.gate is not None:
                await self.gate.wait()
            outcome = self.outcome(job)
            if events is not None:
                for stream in ("stdout", "stderr"):
                    data = getattr(outcome, stream)
                    if data:
                        events(OutputChunk(stream, data, 0.0))
                for result in outcome.results:
                    events(result)
            return outcome
        finally:
            self.running -= 1


@dataclass
class FakeSessionBackend:
    """A SessionBackend whose agents are names: ``agent-N.test``, answered by a FakeAgents."""

    device_names: list[str] = field(default_factory=lambda: ["desktop", "mobile", "iPhone 13"])
    fail_with: str | None = None
    name: str = "fake"
    warm_agents: int = 1
    acquired: list[AgentHandle] = field(default_factory=list)
    given_back: list[AgentHandle] = field(default_factory=list)
    released: list[AgentHandle] = field(default_factory=list)
    dead: set[str] = field(default_factory=set)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def acquire(self) -> AgentHandle:
        if self.fail_with is not None:
            raise BrowserUnavailable(self.fail_with)
        n = next(self._ids)
        handle = AgentHandle(f"ag-{n}", f"http://agent-{n}.test", f"token-{n}-" + "x" * 16)
        self.acquired.append(handle)
        return handle

    def give_back(self, handle: AgentHandle) -> None:
        self.given_back.append(handle)

    async def release(self, handle: AgentHandle) -> None:
        self.released.append(handle)

    def alive(self, handle: AgentHandle) -> bool:
        return handle.agent_id not in self.dead


Responder = Callable[[httpx.Request], httpx.Response]


@dataclass
class FakeAgents:
    """The browser agents' HTTP side, as an ``httpx.MockTransport``.

    Each agent answers the agent API with canned bodies; ``override`` maps a path to a
    responder (or an exception to raise) for the failure a test wants to see.
    """

    override: dict[str, Responder | Exception] = field(default_factory=dict)
    seen: list[httpx.Request] = field(default_factory=list)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        n = request.url.host.split(".")[0].removeprefix("agent-")
        if request.headers.get("authorization") != f"Bearer token-{n}-" + "x" * 16:
            return httpx.Response(401, json={"error": "unauthorized", "message": "no"})
        special = self.override.get(request.url.path)
        if isinstance(special, Exception):
            raise special
        if special is not None:
            return special(request)
        return self._default(request)

    @staticmethod
    def _default(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/session":
            # Read as the real agent reads it: a controller that leaves out what the
            # agent requires (its network) fails here too.
            device = ConfigureRequest.model_validate_json(request.content).device
            return httpx.Response(
                200,
                json={
                    "device": device,
                    "viewport": {"width": 1280, "height": 720},
                    "userAgent": "FakeAgent/1",
                    "isMobile": False,
                    "tabId": "t1",
                },
            )
        if path == "/navigate":
            body = json.loads(request.content)
            return httpx.Response(
                200, json={"tabId": "t1", "url": body["url"], "status": 200, "title": "fake"}
            )
        if path == "/tabs":
            return httpx.Response(
                200,
                json={
                    "tabs": [{"tabId": "t1", "url": "about:blank", "title": ""}],
                    "current": "t1",
                },
            )
        if path == "/content":
            return httpx.Response(200, text="<html>fake</html>")
        return httpx.Response(404, json={"error": "not_found", "message": path})


@dataclass
class InProcess:
    app: FastAPI
    client: httpx.AsyncClient
    """Authenticated; raises what the app raises, as a test should see it."""
    execution: FakeExecutionBackend
    sessions: FakeSessionBackend
    agents: FakeAgents

    def other_client(
        self, headers: dict[str, str] | None = None, *, raise_app_exceptions: bool = True
    ) -> httpx.AsyncClient:
        """Another client of the same app: other headers (none: unauthenticated), or one
        that gets the 500 response a real server would send instead of the exception."""
        transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=raise_app_exceptions)
        return httpx.AsyncClient(
            transport=transport, base_url="http://controller.test", headers=headers
        )


@asynccontextmanager
async def running_app(
    state_dir: Path,
    *,
    execution: FakeExecutionBackend | None = None,
    sessions: FakeSessionBackend | None = None,
    agents: FakeAgents | None = None,
    **overrides: Any,
) -> AsyncIterator[InProcess]:
    """The app with its lifespan running, and a client that calls it in this process."""
    execution = execution or FakeExecutionBackend()
    sessions = sessions or FakeSessionBackend()
    agents = agents or FakeAgents()
    app = create_app(
        settings(state_dir, **overrides),
        execution=execution,
        sessions=sessions,
        agent_transport=agents.transport(),
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://controller.test", headers=AUTH
        ) as client:
            yield InProcess(app, client, execution, sessions, agents)
