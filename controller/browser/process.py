"""One browser agent as a process of this host: its command line, start, readiness and kill.

Each agent is the ``browser_agent`` program with Chromium already launched, serving one
session and then killed with its whole process group.  They die with the service even
on SIGKILL: a parent-death signal on the agent, and the agent exits when its stdin
(held by the service) closes.

When the service runs as root, each agent runs as a uid and gid of its own (leased,
controller.uids), never root and never a sandbox's: the agent, its Playwright driver
and its Chromium alike.  The agent is started isolated (``python -I``, its code copied
where that uid can read but not write it, its working directory there too), with
nothing of the service's environment.  Its Chromium runs in namespaces of its own
(BROWSER_NAMESPACES, by the launcher that Playwright starts in its place): no network
but a loopback port that leads to the agent's proxy (a Unix socket), no other process
to see, the host's files read-only, and its profile, cache and site data on a tmpfs of
BROWSER_DISK_MB that counts against the agent's memory.  An escaped renderer, or the
browser process itself, reaches nothing directly and writes nothing that outlives it.
"""

from __future__ import annotations

import asyncio
import compileall
import contextlib
import json
import logging
import os
import secrets
import shlex
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import browser_agent
from runner.bwrap import BWRAP
from runner.cgroup import SandboxCgroup, enter_argv
from runner.contract import MIB
from runner.supervisor import remove_when_empty

import sandbox_common
from controller.browser.backend import AgentHandle
from controller.errors import BrowserUnavailable
from controller.settings import Settings
from controller.userns import explained
from sandbox_common.processes import exit_future

log = logging.getLogger(__name__)

SETPRIV = "/usr/bin/setpriv"
SOCAT = "/usr/bin/socat"
READY_TIMEOUT_S = 30.0
READY_LINE_LIMIT = 256 * 1024
SWEEPS = 100
CHROMIUM_PROXY_PORT = 3128
"""The proxy's port as Chromium sees it, inside its own network namespace."""
PROXY_INSIDE = "/run/agent-proxy.sock"
"""Where Chromium's namespace has the agent's proxy socket (its launcher forwards there)."""
SMALL_TMPFS = 1 * MIB
"""The size of /var/tmp and /run in Chromium's namespace: nothing of its belongs there."""
BOOTSTRAP = (
    "import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); "
    "runpy.run_module('browser_agent', run_name='__main__', alter_sys=True)"
)
"""``python -I -c BOOTSTRAP CODE_DIR ARGS``: the agent from its copied code, isolated."""
# Inside Chromium's namespaces: forward the loopback proxy port to the agent's socket,
# wait until it listens (its line in /proc/net/tcp: 127.0.0.1:PORT, state LISTEN), then
# become Chromium.  Bounded: a forwarder that never listens fails the launch.
FORWARD = (
    f"{SOCAT} TCP-LISTEN:{CHROMIUM_PROXY_PORT},bind=127.0.0.1,fork,reuseaddr "
    f"UNIX-CONNECT:{PROXY_INSIDE} & "
    "i=0; "
    f"until grep -q ':{CHROMIUM_PROXY_PORT:04X} 00000000:0000 0A' /proc/net/tcp; do "
    'i=$((i + 1)); [ "$i" -lt 500 ] || exit 70; sleep 0.01; done; '
    'exec "$@"'
)


@dataclass(frozen=True)
class AgentLayout:
    """Where one agent's things are on the host."""

    data_dir: Path
    """The agent's own directory (its uid's, 0700): Chromium's private directory, the
    proxy's socket; removed with the agent."""
    code_dir: Path
    """The agent's code, and its working directory: readable, never writable, by it."""
    launcher: Path | None
    """The script Playwright starts in place of Chromium (None: Chromium itself)."""

    @property
    def private_dir(self) -> Path:
        """Chromium's HOME: its profile, cache and site data (a tmpfs in its namespace)."""
        return self.data_dir / "chromium"

    @property
    def proxy_socket(self) -> Path:
        return self.data_dir / "proxy.sock"


def chromium_bwrap_argv(settings: Settings, layout: AgentLayout) -> list[str]:
    """bubblewrap around one session's Chromium (its arguments follow, from Playwright).

    What it may write is a tmpfs of its own: its private directory (profile, cache, site
    data) and /tmp (its temporary files and, with --disable-dev-shm-usage, its shared
    memory), each of BROWSER_DISK_MB, and small /var/tmp and /run; all of it counts
    against the agent's memory cgroup.
    """
    disk = str(settings.browser_disk_mb * MIB)
    return [
        BWRAP,
        "--unshare-user",
        "--unshare-net",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--die-with-parent",
        "--new-session",
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--size",
        disk,
        "--tmpfs",
        "/tmp",  # noqa: S108 - a tmpfs of its own, mounted over the host's
        "--size",
        str(SMALL_TMPFS),
        "--tmpfs",
        "/var/tmp",  # noqa: S108 - a tmpfs of its own, mounted over the host's
        "--size",
        str(SMALL_TMPFS),
        "--tmpfs",
        "/run",
        "--bind",
        str(layout.proxy_socket),
        PROXY_INSIDE,
        "--size",
        disk,
        "--perms",
        "0700",
        "--tmpfs",
        str(layout.private_dir),
        # Its own short /tmp: the temporary directory the driver gave it has a long path,
        # too long for the Unix socket Chromium makes there.
        "--setenv",
        "TMPDIR",
        "/tmp",  # noqa: S108 - its own tmpfs
        "--",
        "/bin/sh",
        "-c",
        FORWARD,
        "chromium-launcher",
        settings.browser_executable,
    ]


def chromium_launcher(settings: Settings, layout: AgentLayout) -> str:
    """The launcher script: exec bubblewrap, then the forwarder, then Chromium."""
    argv = shlex.join(chromium_bwrap_argv(settings, layout))
    return f'#!/bin/sh\n# One session\'s Chromium in namespaces of its own.\nexec {argv} "$@"\n'


AGENT_PACKAGES = ("browser_agent", "sandbox_common")


def agent_code(directory: Path) -> None:
    """Copy the agent's packages (as this process imports them) into ``directory``,
    compiled, readable by every uid and writable by none but this process's."""

    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    directory.chmod(0o755)  # whatever the service's umask (as below)
    for package in (browser_agent, sandbox_common):
        source = Path(package.__file__ or "").parent
        shutil.copytree(
            source, directory / source.name, ignore=shutil.ignore_patterns("__pycache__")
        )
    compileall.compile_dir(directory, quiet=1)
    for path in directory.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def agent_argv(settings: Settings, layout: AgentLayout, ids: tuple[int, int] | None) -> list[str]:
    """The command line of one agent: as ``ids`` (the service's own if None), with a
    parent-death signal and no new privileges, isolated from the service's Python."""
    argv = [SETPRIV]
    if ids is not None:
        argv += ["--reuid", str(ids[0]), "--regid", str(ids[1]), "--clear-groups"]
    argv += ["--pdeathsig", "KILL", "--no-new-privs", "--"]
    argv += [settings.browser_interpreter, "-I", "-c", BOOTSTRAP, str(layout.code_dir)]
    argv += [
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--token-file",
        "-",
        "--exit-on-stdin-eof",
        "--data-dir",
        str(layout.data_dir),
        "--executable",
        str(layout.launcher) if layout.launcher is not None else settings.browser_executable,
        "--reserved-port",
        str(settings.port),
    ]
    if layout.launcher is not None:
        argv += [
            "--proxy-socket",
            str(layout.proxy_socket),
            "--proxy-port",
            str(CHROMIUM_PROXY_PORT),
        ]
    if settings.browser_allow_private_networks:
        argv.append("--allow-private-networks")
    if not settings.browser_chromium_sandbox:
        argv.append("--no-chromium-sandbox")
    return argv


def agent_env(layout: AgentLayout) -> dict[str, str]:
    """Nothing of the service's environment (AUTH_TOKEN included) reaches an agent; what
    it and its Chromium write goes to Chromium's private directory."""
    private = layout.private_dir
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(private),
        "TMPDIR": str(private),
        "XDG_CONFIG_HOME": str(private / ".config"),
        "XDG_CACHE_HOME": str(private / ".cache"),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


class AgentProcess:
    """One agent process of this host and its private directory."""

    def __init__(
        self,
        settings: Settings,
        root_dir: Path,
        code_dir: Path,
        ids: tuple[int, int] | None = None,
        cgroup: SandboxCgroup | None = None,
    ) -> None:
        """Start the agent now, from its code in ``code_dir``, as uid/gid ``ids``; the
        agent, its driver and its Chromium inside ``cgroup`` (removed with them).

        Call from the event loop's thread: the parent-death signal follows that thread.
        """
        self.cgroup = cgroup
        self.agent_id = "ag-" + secrets.token_hex(8)
        self.token = secrets.token_urlsafe(32)
        self.ids = ids
        data_dir = root_dir / self.agent_id
        launcher = root_dir / "bin" / self.agent_id if settings.browser_namespaces else None
        self.layout = AgentLayout(data_dir, code_dir, launcher)
        self.data_dir = data_dir
        data_dir.mkdir(mode=0o700)
        self.layout.private_dir.mkdir(mode=0o700)
        if ids is not None:
            os.chown(data_dir, *ids)
            os.chown(self.layout.private_dir, *ids)
        if launcher is not None:
            # The service's, not the agent's: it is read, never written, by the agent's uid.
            launcher.write_text(chromium_launcher(settings, self.layout))
            launcher.chmod(0o755)
        self._loop = asyncio.get_running_loop()
        # The log is the service's, out of the agent's reach: read back through this
        # descriptor, never by a path the agent's uid could turn into a link elsewhere.
        self._log_path = root_dir / "logs" / f"{self.agent_id}.log"
        self._log = os.open(
            self._log_path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600
        )
        stdin_r, self._stdin_w = os.pipe2(os.O_CLOEXEC)
        self._stdout_r, stdout_w = os.pipe2(os.O_CLOEXEC)
        try:
            argv = agent_argv(settings, self.layout, ids)
            if cgroup is not None:
                argv = enter_argv(cgroup.procs_files, argv)
            self._proc = subprocess.Popen(
                argv,
                stdin=stdin_r,
                stdout=stdout_w,
                stderr=self._log,
                cwd=code_dir,
                env=agent_env(self.layout),
                start_new_session=True,
            )
        except OSError as exc:
            os.close(self._stdin_w)
            os.close(self._stdout_r)
            raise BrowserUnavailable(f"cannot start a browser agent: {exc}") from exc
        finally:
            for fd in (stdin_r, stdout_w):
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
            size = os.fstat(self._log).st_size
            tail = os.pread(self._log, 600, max(size - 600, 0))
            text = tail.decode("utf-8", "replace")
        except OSError:
            text = ""
        last = text.strip().splitlines()[-1] if text.strip() else "no output"
        failure = f"browser agent {what}: {last} (see setting BROWSER_EXECUTABLE)"
        # Chromium in bubblewrap, as the agent's uid: the host may refuse its namespaces.
        return explained(failure) if self.layout.launcher is not None else failure

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

    async def close(self) -> bool:
        """Kill, reap, sweep, remove the private directory (profile, cache); whether
        nothing of the agent is left running (False: call again later).  Idempotent.

        The sweep kills every process still running as this agent's own uid, or carrying
        its HOME, whatever its process group or session: Chromium's own group and its
        crash handlers, which re-parent themselves to init.  Only then is the directory
        removed (and the uid reused), so nothing writes into it afterwards.
        """
        self.kill()
        if self.cgroup is not None:
            self.cgroup.kill()  # everything of the agent, whatever its group or parent
        await self._wait_exit(10)
        gone = False
        for _ in range(SWEEPS):
            uid = self.ids[0] if self.ids is not None else None
            if not await asyncio.to_thread(sweep, self.layout.private_dir, uid):
                gone = True
                break
            await asyncio.sleep(0.05)  # killed ones vanish from /proc once reaped
        for _ in range(5):
            await asyncio.to_thread(shutil.rmtree, self.data_dir, True)
            if not self.data_dir.exists():
                break
            await asyncio.sleep(0.1)
        if self._log >= 0:
            os.close(self._log)
            self._log = -1
            with contextlib.suppress(OSError):
                self._log_path.unlink()
            if self.layout.launcher is not None:
                with contextlib.suppress(OSError):
                    self.layout.launcher.unlink()
        if self.cgroup is not None:
            if not await remove_when_empty(self.cgroup):
                return False
            self.cgroup = None
        return gone


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
