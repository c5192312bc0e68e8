"""Test helpers: the real service started as a subprocess on a free loopback port."""

from __future__ import annotations

import asyncio
import inspect
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from sandbox_common.domains import DomainPolicy
from sandbox_common.egress_gate import EgressGate, EgressRules

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")
TIME_SCALE = float(os.environ.get("TEST_TIME_SCALE", "1"))
"""How much slower than this host the tests run (10 in the emulated cgroup v2 VM of
tests/vm): every deadline of these helpers is stretched by it, no assertion is."""


def parent_pid(pid: int | str) -> int:
    """The parent of a host process (from /proc/PID/stat; OSError when it is gone)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def wait_for(
    check: Callable[[], T | None],
    timeout_s: float = 15,
    what: str = "condition",
    state: Callable[[], object] | None = None,
    interval_s: float = 0.05,
) -> T:
    """Poll ``check`` until it returns something truthy, and return that; fail at the deadline.

    The one polling helper of every tier.  ``state`` describes what was seen instead, for
    the failure message.
    """
    timeout_s *= TIME_SCALE
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            seen = f"; seen: {state()}" if state is not None else ""
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}{seen}")
        time.sleep(interval_s)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def traversable_tempdir(prefix: str) -> str:
    """A temporary directory the unprivileged sandbox uid can traverse (pytest's are 0700)."""
    path = tempfile.mkdtemp(prefix=prefix)
    os.chmod(path, 0o755)
    return path


async def until(
    check: Callable[[], Awaitable[T | None] | T | None],
    timeout_s: float = 5,
    what: str = "condition",
    interval_s: float = 0.01,
) -> T:
    """``wait_for`` for a test on the event loop: ``check`` may be a coroutine function."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        # A poll, not an Event: what is awaited is the product's state, seen from outside.
        await asyncio.sleep(interval_s)


def public_web(rules: EgressRules) -> EgressGate:
    """The gate a browser agent builds for a session on the public web (no allowed
    domains, nothing narrowed): every public name and address, on any port."""
    return EgressGate(DomainPolicy(every_name=True), rules)


def refused_start(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m controller`` with settings it must refuse: it exits, saying why."""
    return subprocess.run(
        [sys.executable, "-m", "controller"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


class ServiceProcess:
    """``python -m controller`` with the given settings, serving on loopback."""

    backend = "local"
    kernel = "linux"

    def __init__(
        self,
        *,
        expect_healthy: bool = True,
        port: int | None = None,
        prefix: tuple[str, ...] = (),
        host: str = "127.0.0.1",
        **settings: str,
    ) -> None:
        """``prefix``: a command the service runs under (``ip netns exec NS``), reached at
        ``host`` (an address of that namespace's)."""
        self.port = port or free_port()
        self.token = secrets.token_urlsafe(24)
        self.state_dir = traversable_tempdir("sandbox-test-state-")
        env = {
            **os.environ,
            "AUTH_TOKEN": self.token,
            "PORT": str(self.port),
            "HOST": host,
            "STATE_DIR": self.state_dir,
            "ACCESS_LOG": "false",
            # No Chromium unless a test asks for browser sessions: it costs a launch.
            "BROWSER_WARM_AGENTS": "0",
        }
        env.update({k.upper(): v for k, v in settings.items()})
        self.env = env
        # The service's log goes to a file: a pipe nobody reads would fill up and block
        # the service on its next log line.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "controller"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.base_url = f"http://{host}:{self.port}"
        self.client = httpx.Client(
            base_url=self.base_url,
            timeout=30 * TIME_SCALE,
            headers={"Authorization": f"Bearer {self.token}"},
        )
        self._wait_healthy(expect_healthy)

    def _wait_healthy(self, expect_healthy: bool, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s * TIME_SCALE
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("service exited: " + self.output())
            try:
                status = httpx.get(self.base_url + "/health", timeout=2 * TIME_SCALE).status_code
                if status == 200 or (status == 503 and not expect_healthy):
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError("service not healthy in time: " + self.output())

    def execute(self, code: str, **fields: Any) -> dict[str, Any]:
        response = self.client.post("/execute", json={"code": code, **fields})
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def output(self) -> str:
        """What the service has logged so far."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def __enter__(self) -> ServiceProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.state_dir, ignore_errors=True)
