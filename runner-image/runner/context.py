"""A code context's sandbox seen from outside: many calls, file operations, restarts.

A started, warm ``Sandbox`` (runner.supervisor) becomes a context when its first job
says so; its stub then keeps it (runner.kernel).  Everything that comes back is
untrusted, as for one-shot executions: answers are bounded lines parsed defensively,
a file's bytes are read only up to the size asked for, output is capped per call, and
every operation has a deadline here that the code cannot move.  A sandbox that breaks
that protocol (or dies) is failed: ``ContextFailed``, and the context is over.

Operations run one at a time: the caller keeps them so (the context service answers a
second one with 409).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any, NoReturn

from runner.coalesce import coalesced
from runner.contract import (
    MAX_VIOLATIONS,
    CallOutcome,
    ContextFailed,
    EventSink,
    FileRefused,
    Outcome,
    OutputChunk,
    RunLimits,
)
from runner.policy import egress_view
from runner.protocol import (
    PipeReader,
    denials_from,
    float_or_none,
    int_or_none,
    parse_status,
)
from runner.results import EventsReader, now_ms
from runner.supervisor import Sandbox, message

MAX_ANSWER_BYTES = 256 * 1024
"""An answer's line (a file's bytes are counted apart, against the size asked for)."""
LIST_ANSWER_BYTES = 4 * 1024 * 1024
"""A listing's line: the keeper stops listing (``complete: false``) before it."""
PIPE_READS = 8
OPERATION_TIMEOUT_S = 15.0
"""How long a file operation, a restart or the setup may take inside the sandbox."""


class _Capture(PipeReader):
    """One output stream: kept (up to a cap) during a call, not read between calls.

    Between calls the pipe is left alone: what the code's background work writes then
    fills it, and the writer waits, rather than this process spending CPU on output that
    belongs to no call.  A call's start discards what is there.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, stream: str) -> None:
        self._chunks: list[bytes] = []
        self._room = 0
        self._stream = stream
        self._sink: EventSink | None = None
        self.truncated = False
        super().__init__(loop, fd)
        self._pause()

    def on_data(self, data: bytes) -> None:
        if len(data) > self._room:
            self.truncated = True
            data = data[: self._room]
        if data:
            self._chunks.append(data)
            self._room -= len(data)
            if self._sink is not None:
                self._sink(OutputChunk(self._stream, data, now_ms()))

    def _pause(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)

    def _read_waiting(self) -> None:
        """What is in the pipe now: a pipe holds at most a few chunks (its writers wait
        beyond), so a few reads take it all, however fast the code writes."""
        for _ in range(PIPE_READS):
            if not self.read_once():
                return

    def start(self, cap: int, sink: EventSink | None = None) -> None:
        self._room, self._sink = 0, None
        self._read_waiting()  # written between calls: no call's
        self._chunks, self._room, self.truncated = [], cap, False
        self._sink = sink
        if self._fd >= 0:
            self._loop.add_reader(self._fd, self.read_once)

    def stop(self) -> None:
        """The call broke off: nothing more is read for it, or told."""
        self._pause()
        self._chunks, self._room, self._sink = [], 0, None

    def finish(self) -> tuple[bytes, bool]:
        """What the call wrote: everything it wrote before it ended is in the pipe."""
        self._read_waiting()
        self._pause()
        self._sink = None
        data, truncated = b"".join(self._chunks), self.truncated
        self._chunks, self._room, self.truncated = [], 0, False
        return data, truncated


class _Answers(PipeReader):
    """The keeper's answers: JSON lines, some followed by bytes.

    The keeper is as untrusted as the code (it runs as the code's uid): nothing it
    writes is held beyond what the request being answered may take, and anything it
    writes when no answer is awaited breaks the context (``on_broken``, at once).
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, fd: int, on_broken: Callable[[str], None]
    ) -> None:
        self._buffer = bytearray()
        self._arrived = asyncio.Event()
        self._room = 0
        self._asked = False
        self._on_broken = on_broken
        self.ended = False
        super().__init__(loop, fd)

    def expect(self, most: int) -> None:
        """An answer of at most ``most`` bytes is asked for."""
        self._room, self._asked = most, True

    def done(self) -> None:
        """The answer has been read whole: anything more is unasked."""
        self._room, self._asked = 0, False
        if self._buffer:
            self._break("the sandbox sent more than its answer")

    def on_data(self, data: bytes) -> None:
        if not data:
            self.ended = True
            self._arrived.set()
            return
        if len(data) > self._room:
            self._break(
                "the sandbox sent more than its answer may hold"
                if self._asked
                else "the sandbox wrote while no answer was asked for"
            )
            return
        self._room -= len(data)
        self._buffer += data
        self._arrived.set()

    def _break(self, why: str) -> None:
        self.close()
        self._on_broken(why)

    async def line(self) -> dict[str, Any]:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                answer = parse_status(line)
                if answer is None:
                    raise ContextFailed("the sandbox answered something that is not JSON")
                return answer
            await self._more()

    async def exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            await self._more()
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    async def _more(self) -> None:
        if self.ended:
            raise ContextFailed("the context's sandbox ended")
        self._arrived.clear()
        await self._arrived.wait()

    def close(self) -> None:
        """Stop reading; an answer awaited now never comes (the context was closed)."""
        super().close()
        self.ended = True
        self._arrived.set()


class ContextSandbox:
    """One code context's sandbox, for its whole life."""

    def __init__(self, sandbox: Sandbox) -> None:
        """Take over ``sandbox`` (started, warm, never used)."""
        loop = asyncio.get_running_loop()
        self.sandbox = sandbox
        stdin, stdout, stderr, status, events = sandbox.hand_over()
        self._requests = stdin
        os.set_blocking(stdin, False)
        self._stdout = _Capture(loop, stdout, "stdout")
        self._stderr = _Capture(loop, stderr, "stderr")
        self._events = EventsReader(loop, events)
        self._answers = _Answers(loop, status, self._broken)
        self._loop = loop
        self._writable: asyncio.Future[None] | None = None
        self._running = False
        self.failed: str | None = None
        """Why the context is over, once it is."""

    async def begin(
        self,
        files: list[tuple[str, bytes]],
        limits: RunLimits,
        *,
        egress: bool,
    ) -> None:
        """Make the warm sandbox a context: its input files written, its interpreter set
        up.  ``FileRefused`` when the files cannot be written."""
        rlimits = {k: v for k, v in limits.rlimits().items() if k != "cpuSeconds"}
        setup: dict[str, object] = {
            **self.sandbox.view,
            "context": True,
            "maxViolations": MAX_VIOLATIONS,
            "files": files,
            "limits": rlimits,  # the CPU-time limit is a run's, never a context's life's
            **(egress_view() if egress else {}),
        }
        answer = await self._exchange(setup, OPERATION_TIMEOUT_S)
        if "setupError" in answer:
            raise FileRefused("writable", str(answer["setupError"])[:500])
        if answer.get("context") != "ready":
            self._fail("the sandbox did not become a context")

    async def run(
        self,
        code: str,
        stdin: str | None,
        limits: RunLimits,
        grace_ms: int,
        figures: tuple[str, ...] = ("image/png",),
        events: EventSink | None = None,
    ) -> CallOutcome:
        """One call: its output, how it ended, and whether the interpreter was replaced.
        ``events`` is told the output, results and violations as they are read."""
        group = self.sandbox.cgroup
        before = group.usage() if group is not None else None
        sink = coalesced(events, self._loop)
        self._stdout.start(limits.output_bytes, sink)
        self._stderr.start(limits.output_bytes, sink)
        self._events.start(limits.results_bytes, sink)
        idle = None
        if group is not None and group.idle_class is not None:
            group.make_normal()
            idle = self._loop.call_later(group.idle_class.after_s, group.make_idle)
        started = self._loop.time()
        request: dict[str, object] = {
            "op": "run",
            "code": code,
            "stdin": stdin,
            "timeoutMs": limits.timeout_ms,
            "graceMs": grace_ms,
            "resultsBytes": limits.results_bytes,
            "figures": list(figures),
        }
        try:
            # Past the timeout and the grace, a restart: the keeper's own deadline is
            # the one that counts; this one only catches a keeper that stopped.
            backstop = (limits.timeout_ms + grace_ms) / 1000 + OPERATION_TIMEOUT_S
            self._running = True
            answer = await self._exchange(request, backstop)
        except BaseException:  # the context failed (or the wait was cancelled)
            for reader in (self._stdout, self._stderr, self._events):
                reader.stop()  # nothing more is told for this call
            raise
        finally:
            self._running = False
            if sink is not None:
                sink.flush()  # no timer of this call outlives it
            if idle is not None:
                idle.cancel()
            if group is not None and group.idle_class is not None:
                group.make_idle()  # between calls, whatever it left running yields
        duration_ms = (self._loop.time() - started) * 1000
        stdout, stdout_truncated = self._stdout.finish()
        stderr, stderr_truncated = self._stderr.finish()
        results = self._events.finish()
        if sink is not None:
            sink.flush()  # everything told before the outcome exists
        after = group.usage() if group is not None else None

        def more(name: str) -> bool:
            was = getattr(before, name, None) or 0
            now = getattr(after, name, None) or 0
            return now > was

        timed_out = answer.get("timedOut") is True
        outcome = Outcome(
            exit_code=None if timed_out else int_or_none(answer.get("exitCode")),
            signal=None if timed_out else int_or_none(answer.get("signal")),
            timed_out=timed_out,
            stdout=stdout,
            stderr=stderr,
            stdout_truncated=stdout_truncated,
            stderr_truncated=stderr_truncated,
            duration_ms=round(duration_ms, 3),
            cpu_user_ms=float_or_none(answer.get("cpuUserMs")),
            cpu_system_ms=float_or_none(answer.get("cpuSystemMs")),
            max_rss_kb=int_or_none(answer.get("maxRssKb")),
            denials=denials_from(answer.get("violations")),
            memory_limit_hit=more("oom_kills"),
            process_limit_hit=more("tasks_refused"),
            results=tuple(results.results),
            skipped_results=tuple(results.skipped),
        )
        return CallOutcome(outcome, answer.get("restarted") is True)

    async def interrupt(self) -> None:
        """Interrupt the call that runs now, as at its timeout (its caller went away): it
        gets KeyboardInterrupt, and the interpreter is restarted if it does not stop.  The
        call's answer comes as usual; with no call running, nothing happens."""
        if not self._running or self.failed is not None or self._writable is not None:
            return  # no call, over, or the call itself is still being sent: its timeout will do
        try:
            await self._send(message({"op": "interrupt"}))
        except (ContextFailed, OSError):
            return

    async def restart(self) -> None:
        answer = await self._exchange({"op": "restart"}, OPERATION_TIMEOUT_S)
        if answer.get("restarted") is not True:
            self._fail("the sandbox did not restart its interpreter")

    async def list_files(self, max_entries: int) -> tuple[list[tuple[str, int]], bool]:
        """The workspace's files (path, size), and whether that is all of them."""
        request = {"op": "list", "maxEntries": max_entries, "maxBytes": LIST_ANSWER_BYTES // 2}
        answer = await self._file_op(request, LIST_ANSWER_BYTES)
        listed = answer.get("files")
        files: list[tuple[str, int]] = []
        for item in listed if isinstance(listed, list) else []:
            path = item.get("path") if isinstance(item, dict) else None
            size = int_or_none(item.get("size")) if isinstance(item, dict) else None
            if isinstance(path, str) and size is not None and len(files) < max_entries:
                files.append((path, size))
        return files, answer.get("complete") is True

    async def read_file(self, path: str, max_bytes: int) -> bytes:
        request = {"op": "read", "path": path, "maxBytes": max_bytes}
        answer = await self._file_op(request, MAX_ANSWER_BYTES + max_bytes, more=True)
        size = int_or_none(answer.get("size"))
        if size is None or not 0 <= size <= max_bytes:
            self._fail("the sandbox sent a file beyond the size asked for")
        try:
            async with asyncio.timeout(OPERATION_TIMEOUT_S):
                data = await self._answers.exactly(size)
        except (TimeoutError, ContextFailed) as exc:
            self._fail(f"the file's bytes did not arrive: {exc}")
        self._answers.done()
        if self.failed is not None:
            self._fail(self.failed)
        return data

    async def write_file(self, path: str, data: bytes) -> None:
        await self._file_op({"op": "write", "path": path, "data": data})

    async def delete(self, path: str) -> None:
        await self._file_op({"op": "delete", "path": path})

    async def _file_op(
        self, request: dict[str, object], most: int = MAX_ANSWER_BYTES, *, more: bool = False
    ) -> dict[str, Any]:
        answer = await self._exchange(request, OPERATION_TIMEOUT_S, most, more=more)
        if "error" in answer:
            if more:
                self._answers.done()  # a refusal has no bytes after it
            raise FileRefused(str(answer["error"])[:40], str(answer.get("message", ""))[:500])
        return answer

    async def _exchange(
        self,
        request: dict[str, object],
        timeout_s: float,
        most: int = MAX_ANSWER_BYTES,
        *,
        more: bool = False,
    ) -> dict[str, Any]:
        """Send one request and read its answer line (``most`` bytes at most, with what
        follows it: ``more``, bytes the caller reads and then ends the answer); any
        breakage fails the context."""
        if self.failed is not None:
            raise ContextFailed(self.failed)
        self._answers.expect(most)
        try:
            async with asyncio.timeout(timeout_s):
                await self._send(message(request))
                answer = await self._answers.line()
            if not more:
                self._answers.done()
            if self.failed is not None:  # more came with it than it may hold
                raise ContextFailed(self.failed)
            return answer
        except TimeoutError:
            self._fail(f"the sandbox did not answer within {timeout_s:.0f}s")
        except (ContextFailed, OSError) as exc:
            self._fail(str(exc) or type(exc).__name__)

    async def _send(self, payload: bytes) -> None:
        view = memoryview(payload)
        while view:
            fd = self._requests
            if fd < 0:
                raise ContextFailed("the context was closed")
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                self._writable = self._loop.create_future()
                self._loop.add_writer(fd, self._writable.set_result, None)
                try:
                    await self._writable
                finally:
                    self._writable = None
                    if self._requests == fd:  # close() has not taken it away meanwhile
                        self._loop.remove_writer(fd)

    def _broken(self, why: str) -> None:
        """The keeper broke the protocol (on the loop, as its bytes came): it dies now."""
        self.failed = self.failed or why
        self.sandbox.kill()

    def _fail(self, why: str) -> NoReturn:
        """The context is over: its sandbox is killed now."""
        self.failed = self.failed or why
        self.sandbox.kill()
        raise ContextFailed(self.failed)

    def close(self) -> None:
        """Kill the sandbox and release this side's descriptors; the sandbox's owner
        closes the sandbox itself (Sandbox.close: its cgroup, its reaping)."""
        self.failed = self.failed or "closed"
        self.sandbox.kill()
        for reader in (self._stdout, self._stderr, self._events, self._answers):
            reader.close()
        if self._requests >= 0:
            self._loop.remove_writer(self._requests)
            os.close(self._requests)
            self._requests = -1
        if self._writable is not None and not self._writable.done():
            self._writable.set_exception(ContextFailed("the context was closed"))
