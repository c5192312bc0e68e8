"""One sandbox process seen from outside: start it early, hand it one job, collect the outcome.

Everything that comes out of the sandbox (output, the stub's status) is untrusted: it is
read with caps and parsed defensively (runner.protocol).  The output caps, a backstop
deadline past the timeout (the stub applies the timeout itself, so that it can still
collect files) and the final kill are enforced here, where the code cannot reach.
"""

from __future__ import annotations

import asyncio
import contextlib
import marshal
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from runner.policy import SANDBOX_ENV, Limits
from runner.protocol import (
    READ_CHUNK,
    Harvested,
    HarvestLimits,
    StatusReader,
    float_or_none,
    int_or_none,
    violations_from,
)

STATUS_GRACE_S = 2.0
HARVEST_TIMEOUT_S = 10.0


class SandboxError(Exception):
    """The sandbox itself failed (not the user's code): it could not start or broke down."""


@dataclass
class Outcome:
    """How one execution ended, as seen from outside the sandbox."""

    exit_code: int | None
    signal: int | None
    timed_out: bool
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    duration_ms: float
    cpu_user_ms: float | None = None
    cpu_system_ms: float | None = None
    max_rss_kb: int | None = None
    violations: list[dict[str, str]] = field(default_factory=list)
    status_missing: bool = False
    """The stub never reported: the user's code killed or broke its own supervisor process."""
    setup_error: str | None = None
    """The job could not be set up (its input files could not be written)."""
    harvested: Harvested = field(default_factory=lambda: Harvested())


class _CappedReader:
    """Reads a non-blocking fd, keeping at most ``cap`` bytes and counting the rest."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, cap: int) -> None:
        self._loop, self._fd, self._cap = loop, fd, cap
        self._chunks: list[bytes] = []
        self.kept = 0
        self.truncated = False
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._read_once)

    def _read_once(self) -> bool:
        """Read one chunk; False when nothing more is available right now (or at EOF)."""
        try:
            data = os.read(self._fd, READ_CHUNK)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            self.close()
            return False
        room = self._cap - self.kept
        if len(data) > room:
            self.truncated = True
            data = data[:room]
        if data:
            self._chunks.append(data)
            self.kept += len(data)
        return True

    def drain(self) -> None:
        """Read what is already in the pipe, without waiting for the writers to finish.

        Once the main process has exited, all it wrote is in the pipe; anything still
        running in the sandbox is about to be killed, so its later output is not awaited.
        """
        while self._fd >= 0 and self._read_once():
            pass

    def data(self) -> bytes:
        return b"".join(self._chunks)

    def close(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1


def exit_future(
    loop: asyncio.AbstractEventLoop, proc: subprocess.Popen[bytes]
) -> asyncio.Future[None]:
    """A future that resolves once ``proc`` has exited, and reaps it then.

    A pidfd watched by the event loop: no child watcher, no thread per process.
    """
    exited: asyncio.Future[None] = loop.create_future()
    pidfd = os.pidfd_open(proc.pid)

    def on_exit() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        proc.wait()
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(pidfd, on_exit)
    return exited


def _pipe_with(data: bytes) -> int:
    """A pipe's read end, holding ``data`` (which must fit in the pipe's buffer)."""
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        os.write(write_end, data)
    finally:
        os.close(write_end)
    return read_end


class Sandbox:
    """A started bubblewrap sandbox waiting for exactly one job."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        status_fd_placeholder: str,
        fd_data: dict[str, bytes] | None = None,
    ) -> None:
        """Start the sandbox now (``argv`` from bwrap.launcher_argv).

        ``fd_data`` maps more placeholders in ``argv`` to bytes that bubblewrap reads
        from a pipe (the seccomp program).
        """
        loop = asyncio.get_running_loop()
        # Raw pipes that this object owns: (parent end, child end) for each stream.
        status_r, status_w = os.pipe2(os.O_CLOEXEC)
        stdin_r, stdin_w = os.pipe2(os.O_CLOEXEC)
        stdout_r, stdout_w = os.pipe2(os.O_CLOEXEC)
        stderr_r, stderr_w = os.pipe2(os.O_CLOEXEC)
        inputs = {name: _pipe_with(data) for name, data in (fd_data or {}).items()}
        argv = [
            str(status_w) if a == status_fd_placeholder else str(inputs.get(a, a)) for a in argv
        ]
        try:
            self._proc = subprocess.Popen(
                argv,
                stdin=stdin_r,
                stdout=stdout_w,
                stderr=stderr_w,
                pass_fds=(status_w, *inputs.values()),
                env=dict(SANDBOX_ENV),
                start_new_session=True,
            )
        except OSError as exc:
            for fd in (status_r, stdin_w, stdout_r, stderr_r):
                os.close(fd)
            raise SandboxError(f"cannot start bubblewrap: {exc}") from exc
        finally:
            for fd in (status_w, stdin_r, stdout_w, stderr_w, *inputs.values()):
                os.close(fd)
        self._loop = loop
        self._stdin_fd, self._stdout_fd, self._stderr_fd = stdin_w, stdout_r, stderr_r
        self._status = StatusReader(loop, status_r)
        self._exited = exit_future(loop, self._proc)
        self.started_at = time.monotonic()
        self.used = False

    @property
    def alive(self) -> bool:
        return not self._exited.done()

    async def wait_ready(self, timeout_s: float) -> None:
        """Wait until the interpreter inside is warm; raise SandboxError if it never is."""
        try:
            ready = await asyncio.wait_for(asyncio.shield(self._status.ready), timeout_s)
        except TimeoutError as exc:
            raise SandboxError(f"sandbox not ready after {timeout_s:.1f}s") from exc
        if not ready:
            await self.close()
            raise SandboxError(f"sandbox failed to start: {self._startup_error()}")

    def _startup_error(self) -> str:
        try:
            os.set_blocking(self._stderr_fd, False)
            text = os.read(self._stderr_fd, 4096)
        except OSError:
            text = b""
        return text.decode("utf-8", "replace").strip() or "bubblewrap exited"

    async def run(
        self, job: dict[str, Any], limits: Limits, harvest: HarvestLimits | None = None
    ) -> Outcome:
        """Hand the job to the sandbox and collect how it ended.  Single use.

        The stub applies the timeout itself (so that it can still collect the files);
        this side waits a grace period longer and then kills everything regardless.
        """
        if self.used:
            raise SandboxError("a sandbox runs exactly one job")
        self.used = True
        stdout = _CappedReader(self._loop, self._take("_stdout_fd"), limits.output_bytes)
        stderr = _CappedReader(self._loop, self._take("_stderr_fd"), limits.output_bytes)
        self._status.limits = harvest
        payload = marshal.dumps(
            {
                **job,
                "limits": limits.rlimits(),
                "timeoutMs": limits.timeout_ms,
                "harvest": harvest.wire() if harvest else None,
            }
        )
        started = time.monotonic()
        backstop = False
        try:
            await self._send(payload)
            status = await asyncio.wait_for(
                asyncio.shield(self._status.status), limits.timeout_ms / 1000 + STATUS_GRACE_S
            )
        except TimeoutError:
            status, backstop = None, True
        except BrokenPipeError:
            status = None
        duration_ms = (time.monotonic() - started) * 1000
        harvested = Harvested()
        if status is not None and harvest is not None:
            try:
                harvested = await asyncio.wait_for(
                    asyncio.shield(self._status.harvest), HARVEST_TIMEOUT_S
                )
            except TimeoutError:
                harvested = Harvested(error=f"files not collected within {HARVEST_TIMEOUT_S}s")
        # The run is over: whatever is left in the sandbox dies now.
        self.kill()
        for reader in (stdout, stderr):
            reader.drain()
            reader.close()
        status = status or {}
        timed_out = backstop or status.get("timedOut") is True
        setup_error = status.get("setupError")
        return Outcome(
            exit_code=None if timed_out else int_or_none(status.get("exitCode")),
            signal=None if timed_out else int_or_none(status.get("signal")),
            timed_out=timed_out,
            stdout=stdout.data(),
            stderr=stderr.data(),
            stdout_truncated=stdout.truncated,
            stderr_truncated=stderr.truncated,
            duration_ms=round(duration_ms, 3),
            cpu_user_ms=float_or_none(status.get("cpuUserMs")),
            cpu_system_ms=float_or_none(status.get("cpuSystemMs")),
            max_rss_kb=int_or_none(status.get("maxRssKb")),
            violations=violations_from(status.get("violations")),
            status_missing=not timed_out and not status,
            setup_error=str(setup_error)[:500] if setup_error is not None else None,
            harvested=harvested,
        )

    def _take(self, name: str) -> int:
        """Hand over ownership of one of our raw fds (it is then closed by its new owner)."""
        fd: int = getattr(self, name)
        setattr(self, name, -1)
        return fd

    async def _send(self, payload: bytes) -> None:
        fd = self._take("_stdin_fd")
        os.set_blocking(fd, False)
        view = memoryview(payload)
        try:
            while view:
                try:
                    written = os.write(fd, view)
                    view = view[written:]
                except BlockingIOError:
                    writable = self._loop.create_future()
                    self._loop.add_writer(fd, writable.set_result, None)
                    try:
                        await writable
                    finally:
                        self._loop.remove_writer(fd)
        finally:
            os.close(fd)

    def kill(self) -> None:
        """Kill the sandbox and everything in it (its pid namespace dies with bubblewrap)."""
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)

    async def close(self) -> None:
        """Kill and reap; release every fd.  Safe to call more than once."""
        self.kill()
        self._status.close()
        for name in ("_stdin_fd", "_stdout_fd", "_stderr_fd"):
            fd = self._take(name)
            if fd >= 0:
                os.close(fd)
        await asyncio.shield(self._exited)
