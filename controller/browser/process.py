"""One browser agent as a process of this host: its command line, start, readiness and kill.

Each agent is ``python -m browser_agent`` with Chromium already launched, serving one
session and then killed with its whole process group.  They die with the service even
on SIGKILL: a parent-death signal on the agent, and the agent exits when its stdin
(held by the service) closes.

When the service runs as root, each agent's Chromium (the part that handles untrusted
web content) runs as a uid and gid of its own, never root and never the sandbox's, and
so keeps its own sandbox.  The agent itself (this project's code and the Playwright
driver) runs as the service: the checkout and its virtualenv then need not be readable
by another uid, so a service run from ``/root/...`` works too.  The switch happens in a
small launcher that Playwright starts in place of Chromium.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from runner.cgroup import SandboxCgroup, enter_argv
from runner.supervisor import remove_when_empty

from controller.browser.backend import AgentHandle
from controller.errors import BrowserUnavailable
from controller.settings import Settings
from sandbox_common.processes import exit_future

log = logging.getLogger(__name__)

SETPRIV = "/usr/bin/setpriv"
READY_TIMEOUT_S = 30.0
READY_LINE_LIMIT = 256 * 1024
SWEEPS = 100
LAUNCHER_NAME = "launch-chromium"
# Started by the Playwright driver (as root) in place of Chromium: hands the profile that
# the driver created to the agent's uid, then becomes Chromium as that uid.  It lives in
# a root-owned directory, never in the agent's own (which that uid could write).
LAUNCHER = """#!/bin/sh
set -eu
for arg in "$@"; do
  case "$arg" in
    --user-data-dir=*) chown -R -- "$BROWSER_AGENT_UID:$BROWSER_AGENT_GID" "${arg#*=}" ;;
  esac
done
exec /usr/bin/setpriv --reuid "$BROWSER_AGENT_UID" --regid "$BROWSER_AGENT_GID" \
  --clear-groups --no-new-privs -- "$BROWSER_AGENT_CHROMIUM" "$@"
"""


def write_launcher(directory: Path) -> Path:
    """Install the Chromium launcher (root-owned, not writable by any agent uid)."""
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    path = directory / LAUNCHER_NAME
    path.write_text(LAUNCHER)
    path.chmod(0o755)
    return path


def agent_argv(settings: Settings, data_dir: Path, launcher: Path | None) -> list[str]:
    """The command line of one agent: setpriv sets its parent-death signal.

    ``launcher``: start Chromium through it (as the agent's own uid), not directly.
    """
    argv = [SETPRIV, "--pdeathsig", "KILL", "--no-new-privs"]
    argv += [
        sys.executable,
        "-m",
        "browser_agent",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--token-file",
        "-",
        "--exit-on-stdin-eof",
        "--data-dir",
        str(data_dir),
        "--executable",
        str(launcher) if launcher is not None else settings.browser_executable,
        "--reserved-port",
        str(settings.port),
    ]
    if settings.browser_allow_private_networks:
        argv.append("--allow-private-networks")
    if not settings.browser_chromium_sandbox:
        argv.append("--no-chromium-sandbox")
    return argv


def agent_env(settings: Settings, data_dir: Path, ids: tuple[int, int] | None) -> dict[str, str]:
    """Nothing of the service's environment (AUTH_TOKEN included) reaches an agent.

    With ``ids``, the launcher's parameters: the uid, gid and binary of Chromium.
    """
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(data_dir),
        "TMPDIR": str(data_dir),
        "XDG_CONFIG_HOME": str(data_dir / ".config"),
        "XDG_CACHE_HOME": str(data_dir / ".cache"),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    if ids is not None:
        env["BROWSER_AGENT_UID"], env["BROWSER_AGENT_GID"] = str(ids[0]), str(ids[1])
        env["BROWSER_AGENT_CHROMIUM"] = settings.browser_executable
    return env


class AgentProcess:
    """One agent process of this host and its private directory."""

    def __init__(
        self,
        settings: Settings,
        root_dir: Path,
        ids: tuple[int, int] | None = None,
        launcher: Path | None = None,
        cgroup: SandboxCgroup | None = None,
    ) -> None:
        """Start the agent now; its Chromium as uid/gid ``ids`` through ``launcher``;
        the agent, its driver and its Chromium inside ``cgroup`` (removed with them).

        Call from the event loop's thread: the parent-death signal follows that thread.
        """
        self.cgroup = cgroup
        self.agent_id = "ag-" + secrets.token_hex(8)
        self.token = secrets.token_urlsafe(32)
        self.data_dir = root_dir / self.agent_id
        self.ids = ids
        self.data_dir.mkdir(mode=0o700)
        # Chromium writes here (its HOME, profile, downloads) as the agent's uid.
        (self.data_dir / "downloads").mkdir(mode=0o700)
        if ids is not None:
            os.chown(self.data_dir, *ids)
            os.chown(self.data_dir / "downloads", *ids)
        self._loop = asyncio.get_running_loop()
        log_fd = os.open(
            self.data_dir / "agent.log", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600
        )
        stdin_r, self._stdin_w = os.pipe2(os.O_CLOEXEC)
        self._stdout_r, stdout_w = os.pipe2(os.O_CLOEXEC)
        try:
            argv = agent_argv(settings, self.data_dir, launcher if ids is not None else None)
            if cgroup is not None:
                argv = enter_argv(cgroup.procs_files, argv)
            self._proc = subprocess.Popen(
                argv,
                stdin=stdin_r,
                stdout=stdout_w,
                stderr=log_fd,
                cwd=self.data_dir,
                env=agent_env(settings, self.data_dir, ids),
                start_new_session=True,
            )
        except OSError as exc:
            os.close(self._stdin_w)
            os.close(self._stdout_r)
            raise BrowserUnavailable(f"cannot start a browser agent: {exc}") from exc
        finally:
            for fd in (stdin_r, stdout_w, log_fd):
                os.close(fd)
        # The token goes through the pipe, never argv or environment; the pipe then stays
        # open as the agent's lifeline.
        with contextlib.suppress(BrokenPipeError):  # it died at once: wait_ready says why
            os.write(self._stdin_w, self.token.encode() + b"\n")
        self._exited = exit_future(self._loop, self._proc)
        self.endpoint = ""
        self.device_names: list[str] = []

    @property
    def alive(self) -> bool:
        return not self._exited.done()

    def handle(self) -> AgentHandle:
        return AgentHandle(agent_id=self.agent_id, endpoint=self.endpoint, token=self.token)

    async def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Wait for the agent's ready line (its port); raise BrowserUnavailable otherwise."""
        line: asyncio.Future[bytes] = self._loop.create_future()
        buffer = bytearray()

        def on_readable() -> None:
            try:
                data = os.read(self._stdout_r, READY_LINE_LIMIT)
            except BlockingIOError:
                return
            buffer.extend(data)
            if (not data or b"\n" in buffer or len(buffer) > READY_LINE_LIMIT) and not line.done():
                line.set_result(bytes(buffer).split(b"\n", 1)[0])

        os.set_blocking(self._stdout_r, False)
        self._loop.add_reader(self._stdout_r, on_readable)
        try:
            ready = await asyncio.wait_for(line, timeout_s)
        except TimeoutError:
            raise BrowserUnavailable(self._failure(f"not ready after {timeout_s:.0f}s")) from None
        finally:
            self._loop.remove_reader(self._stdout_r)
            os.close(self._stdout_r)
        port, self.device_names = _parse_ready(ready)
        if port is None:
            await self._wait_exit(2)
            raise BrowserUnavailable(self._failure("exited before it was ready"))
        self.endpoint = f"http://127.0.0.1:{port}"

    def _failure(self, what: str) -> str:
        try:
            text = (self.data_dir / "agent.log").read_bytes()[-600:].decode("utf-8", "replace")
        except OSError:
            text = ""
        last = text.strip().splitlines()[-1] if text.strip() else "no output"
        return f"browser agent {what}: {last} (see setting BROWSER_EXECUTABLE)"

    async def _wait_exit(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._exited), timeout_s)

    def kill(self) -> None:
        """Kill the agent's process group: the agent, its Playwright driver and Chromium.

        Chromium runs in a group of its own (Playwright starts it detached) and exits as
        soon as the driver's pipe to it closes; ``close`` also sweeps up what is left.
        """
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
        if self._stdin_w >= 0:
            os.close(self._stdin_w)
            self._stdin_w = -1

    async def close(self) -> None:
        """Kill, reap, sweep, remove the private directory (profile, downloads).  Idempotent.

        The sweep kills every process still running as this agent's own uid, or carrying
        its HOME, whatever its process group or session: Chromium's own group and its
        crash handlers, which re-parent themselves to init.  Only then is the directory
        removed (and the uid reused), so nothing writes into it afterwards.
        """
        self.kill()
        if self.cgroup is not None:
            self.cgroup.kill()  # everything of the agent, whatever its group or parent
        await self._wait_exit(10)
        for _ in range(SWEEPS):
            uid = self.ids[0] if self.ids is not None else None
            if not await asyncio.to_thread(sweep, self.data_dir, uid):
                break
            await asyncio.sleep(0.05)  # killed ones vanish from /proc once reaped
        for _ in range(5):
            await asyncio.to_thread(shutil.rmtree, self.data_dir, True)
            if not self.data_dir.exists():
                break
            await asyncio.sleep(0.1)
        if self.cgroup is not None:
            group, self.cgroup = self.cgroup, None
            await remove_when_empty(group)


def sweep(directory: Path, uid: int | None) -> int:
    """SIGKILL every process of ``uid`` or whose environment has ``HOME=directory``.

    Returns how many were found.  The uid is exact when each agent has its own; HOME
    covers the case without (the service is not root), for whatever kept its environment.
    """
    marker = b"HOME=" + bytes(directory) + b"\0"
    found = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if uid is None or os.stat(f"/proc/{entry}").st_uid != uid:
                with open(f"/proc/{entry}/environ", "rb") as environ:
                    if marker not in b"\0" + environ.read():
                        continue
            os.kill(int(entry), signal.SIGKILL)
            found += 1
        except OSError:
            continue
    return found


def _parse_ready(line: bytes) -> tuple[int | None, list[str]]:
    """The agent's port and device names from its ready line (parsed defensively)."""
    try:
        value = json.loads(line)
    except ValueError:
        return None, []
    if not isinstance(value, dict):
        return None, []
    port = value.get("port")
    names = value.get("devices")
    devices = [n for n in names[:2000] if isinstance(n, str)] if isinstance(names, list) else []
    return (port if isinstance(port, int) and 0 < port < 65536 else None), devices
