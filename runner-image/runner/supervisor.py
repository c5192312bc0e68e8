"""One sandbox process seen from outside: start it early, hand it one job, collect the outcome.

Everything that comes out of the sandbox (output, the stub's status) is untrusted: it is
read with caps and parsed defensively (runner.protocol).  The output caps, a backstop
deadline past the timeout (the stub applies the timeout itself, so that it can still
collect files) and the final kill are enforced here, where the code cannot reach.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import marshal
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from typing import Any

from runner.cgroup import CgroupError, SandboxCgroup, enter_argv
from runner.coalesce import coalesced
from runner.contract import (
    MAX_ERROR_CHARS,
    MAX_VIOLATIONS,
    EventSink,
    Harvested,
    HarvestLimits,
    Job,
    Outcome,
    OutputChunk,
    RunLimits,
    SandboxLimits,
)
from runner.policy import SANDBOX_ENV, egress_view
from runner.protocol import (
    PipeReader,
    StatusReader,
    denials_from,
    float_or_none,
    int_or_none,
)
from runner.results import EventsReader, now_ms
from runner.wire import harvest_fields
from sandbox_common.processes import exit_future

log = logging.getLogger(__name__)

STATUS_GRACE_S = 2.0
CGROUP_REMOVE_S = 5.0
HARVEST_TIMEOUT_S = 10.0


class SandboxError(Exception):
    """The sandbox itself failed (not the user's code): it could not start or broke down."""


class _CappedReader(PipeReader):
    """Keeps at most ``cap`` bytes of a pipe and notes whether more came; each piece
    kept goes to ``sink`` as it is read (an ``OutputChunk`` of ``stream``)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fd: int,
        cap: int,
        stream: str = "",
        sink: EventSink | None = None,
    ) -> None:
        self._cap = cap
        self._chunks: list[bytes] = []
        self._stream, self._sink = stream, sink
        self.kept = 0
        self.truncated = False
        super().__init__(loop, fd)

    def on_data(self, data: bytes) -> None:
        room = self._cap - self.kept
        if len(data) > room:
            self.truncated = True
            data = data[:room]
        if data:
            self._chunks.append(data)
            self.kept += len(data)
            if self._sink is not None:
                self._sink(OutputChunk(self._stream, data, now_ms()))

    def drain(self) -> None:
        """Read what is already in the pipe, without waiting for the writers to finish.

        Once the main process has exited, all it wrote is in the pipe; anything still
        running in the sandbox is about to be killed, so its later output is not awaited.
        """
        while self.read_once():
            pass

    def data(self) -> bytes:
        return b"".join(self._chunks)


def message(document: dict[str, object]) -> bytes:
    """One message to the stub: its length (4 bytes, big-endian), then ``marshal``."""
    body = marshal.dumps(document)
    return len(body).to_bytes(4, "big") + body


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
        events_fd_placeholder: str,
        mounted: SandboxLimits,
        view: dict[str, object],
        fd_data: dict[str, bytes] | None = None,
        cgroup: SandboxCgroup | None = None,
    ) -> None:
        """Start the sandbox now (``argv`` from runner.launch; its placeholders replaced by
        the descriptors of the stub's status pipe and the code's events pipe).

        ``mounted``: the limits ``argv`` mounts the sandbox with; ``view``: what the stub
        is told of the policy with each job (runner.policy.sandbox_view).  ``fd_data``
        maps more placeholders in ``argv`` to bytes that bubblewrap reads from a pipe
        (the seccomp program).  ``cgroup``: the sandbox's own, made for it and empty;
        the sandbox starts inside it, and the cgroup is removed with the sandbox.
        """
        self._cgroup = cgroup
        if cgroup is not None:
            argv = enter_argv(cgroup.procs_files, list(argv))
        loop = asyncio.get_running_loop()
        # Raw pipes that this object owns: (parent end, child end) for each stream.
        status_r, status_w = os.pipe2(os.O_CLOEXEC)
        stdin_r, stdin_w = os.pipe2(os.O_CLOEXEC)
        stdout_r, stdout_w = os.pipe2(os.O_CLOEXEC)
        stderr_r, stderr_w = os.pipe2(os.O_CLOEXEC)
        events_r, events_w = os.pipe2(os.O_CLOEXEC)
        inputs = {name: _pipe_with(data) for name, data in (fd_data or {}).items()}
        placed = {status_fd_placeholder: str(status_w), events_fd_placeholder: str(events_w)}
        argv = [placed.get(a) or str(inputs.get(a, a)) for a in argv]
        try:
            self._proc = subprocess.Popen(
                argv,
                stdin=stdin_r,
                stdout=stdout_w,
                stderr=stderr_w,
                pass_fds=(status_w, events_w, *inputs.values()),
                env=dict(SANDBOX_ENV),
                start_new_session=True,
            )
        except OSError as exc:
            for fd in (status_r, stdin_w, stdout_r, stderr_r, events_r):
                os.close(fd)
            if cgroup is not None:
                cgroup.remove()
            raise SandboxError(f"cannot start bubblewrap: {exc}") from exc
        finally:
            for fd in (status_w, stdin_r, stdout_w, stderr_w, events_w, *inputs.values()):
                os.close(fd)
        self._loop = loop
        self.mounted = mounted
        self._view = view
        self._stdin_fd, self._stdout_fd, self._stderr_fd = stdin_w, stdout_r, stderr_r
        self._status = StatusReader(loop, status_r)
        self._events = EventsReader(loop, events_r)
        self._exited = exit_future(loop, self._proc)
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
            why = self._startup_error()  # before close() takes its stderr
            await self.close()
            raise SandboxError(f"sandbox failed to start: {why}")

    def _startup_error(self) -> str:
        try:
            os.set_blocking(self._stderr_fd, False)
            text = os.read(self._stderr_fd, 4096)
        except OSError:
            text = b""
        return text.decode("utf-8", "replace").strip() or "bubblewrap exited"

    async def run(self, job: Job, events: EventSink | None = None) -> Outcome:
        """Hand the job to the sandbox and collect how it ended.  Single use.

        The stub applies the timeout itself (so that it can still collect the files);
        this side waits a grace period longer and then kills everything regardless.
        ``events`` is told the output, results and violations as they are read.
        """
        if self.used:
            raise SandboxError("a sandbox runs exactly one job")
        if job.sandbox != self.mounted:
            raise SandboxError(
                f"the job needs a sandbox mounted with {job.sandbox}, this one has {self.mounted}"
            )
        self.used = True
        limits, harvest = job.limits, job.harvest
        sink = coalesced(events, self._loop)
        stdout = _CappedReader(
            self._loop, self._take("_stdout_fd"), limits.output_bytes, "stdout", sink
        )
        stderr = _CappedReader(
            self._loop, self._take("_stderr_fd"), limits.output_bytes, "stderr", sink
        )
        self._events.start(limits.results_bytes, sink)
        self._status.limits = harvest
        try:
            status, harvested, backstop, duration_ms = await self._collect(job, limits, harvest)
        except BaseException:  # cancelled (the caller went away): the sandbox ends now
            self.kill()
            for reader in (stdout, stderr):
                reader.close()
            self._events.close()
            if sink is not None:
                sink.flush()
            raise
        for reader in (stdout, stderr):
            reader.drain()
            reader.close()
        results = self._events.finish()
        self._events.close()
        if sink is not None:
            sink.flush()  # everything told before the outcome exists
        status = status or {}
        timed_out = backstop or status.get("timedOut") is True
        setup_error = status.get("setupError")
        # The whole execution's figures, where it has a cgroup: its peak counts every
        # process and the tmpfs pages written, not the largest process alone.
        usage = self._cgroup.usage() if self._cgroup is not None else None
        peak_kb = usage.peak_bytes // 1024 if usage and usage.peak_bytes is not None else None
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
            max_rss_kb=peak_kb if peak_kb is not None else int_or_none(status.get("maxRssKb")),
            denials=denials_from(status.get("violations")),
            status_missing=not timed_out and not status,
            setup_error=str(setup_error)[:MAX_ERROR_CHARS] if setup_error is not None else None,
            memory_limit_hit=bool(usage and usage.oom_kills),
            process_limit_hit=bool(usage and usage.tasks_refused),
            harvested=harvested,
            results=tuple(results.results),
            skipped_results=tuple(results.skipped),
        )

    async def _collect(
        self, job: Job, limits: RunLimits, harvest: HarvestLimits | None
    ) -> tuple[dict[str, Any] | None, Harvested, bool, float]:
        """Send the job; its status, its files, whether the backstop ended it, its time."""
        # The stub's own format (marshal: built in, nothing to import inside the sandbox).
        payload = message(
            {
                **self._view,
                "maxViolations": MAX_VIOLATIONS,
                "code": job.code,
                "stdin": job.stdin,
                "files": [(f.path, f.content) for f in job.files],
                "limits": limits.rlimits(),
                "timeoutMs": limits.timeout_ms,
                "resultsBytes": limits.results_bytes,
                "figures": list(job.figures),
                "harvest": harvest_fields(harvest),
                **(egress_view() if job.reaches_proxy else {}),
            }
        )
        started = time.monotonic()
        backstop = False
        # Past its first moments the run gives way to fresh ones: a short execution is
        # not slowed by long or hostile ones beside it (docs/sandbox.md, "CPU").
        group, idle = self._cgroup, None
        if group is not None and group.idle_class is not None:
            group.make_normal()  # warmed up in the warming class (runner.cgroup)
            idle = self._loop.call_later(group.idle_class.after_s, group.make_idle)
        try:
            await self._send(payload)
            status = await asyncio.wait_for(
                asyncio.shield(self._status.status), limits.timeout_ms / 1000 + STATUS_GRACE_S
            )
        except TimeoutError:
            status, backstop = None, True
        except BrokenPipeError:
            status = None
        finally:
            if idle is not None:
                idle.cancel()
            if group is not None:  # the code has ended: collecting its files waits for none
                group.make_normal()
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
        return status, harvested, backstop, duration_ms

    @property
    def view(self) -> dict[str, object]:
        """What the stub is told of the policy with a job (runner.policy.sandbox_view)."""
        return self._view

    @property
    def cgroup(self) -> SandboxCgroup | None:
        return self._cgroup

    def hand_over(self) -> tuple[int, int, int, int, int]:
        """Its stdin, stdout, stderr, status and events descriptors, now the caller's to
        use and close (a code context talks to the stub itself: runner.context).  Single
        use, as ``run``; ``kill`` and ``close`` still end the sandbox."""
        if self.used:
            raise SandboxError("this sandbox was already used")
        self.used = True
        return (
            self._take("_stdin_fd"),
            self._take("_stdout_fd"),
            self._take("_stderr_fd"),
            self._status.detach(),
            self._events.detach(),
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
        if self._cgroup is not None:
            self._cgroup.kill()  # anything the namespace's end has not taken yet

    async def close(self) -> bool:
        """Kill and reap; release every fd.  True once nothing of the sandbox is left (its
        cgroup, if it has one, removed: a pid namespace's processes die with it, but may
        take a while to); False while its cgroup still holds processes CGROUP_REMOVE_S
        after the kill (call again later).  Safe to call more than once."""
        self.kill()
        self._status.close()
        self._events.close()
        for name in ("_stdin_fd", "_stdout_fd", "_stderr_fd"):
            fd = self._take(name)
            if fd >= 0:
                os.close(fd)
        await asyncio.shield(self._exited)
        if self._cgroup is not None:
            if not await asyncio.shield(remove_when_empty(self._cgroup)):
                return False
            self._cgroup = None
        return True


async def remove_when_empty(group: SandboxCgroup) -> bool:
    """Remove a killed sandbox's cgroup once its last process is gone (exiting processes
    free their memory first); whether it is gone.  One still busy after CGROUP_REMOVE_S
    is left (for another try, or the service's reaping: SandboxCgroups.reap) and said so."""
    deadline = time.monotonic() + CGROUP_REMOVE_S
    try:
        while not group.remove():
            if time.monotonic() > deadline:
                log.warning(
                    "cgroup %s still busy %.0fs after the kill", group.name, CGROUP_REMOVE_S
                )
                return False
            await asyncio.sleep(0.005)
    except CgroupError as exc:
        log.warning("%s", exc)
        return False
    return True
