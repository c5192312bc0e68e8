"""Inside a code context's sandbox: the keeper (PID 1) and the interpreter that keeps state.

A context is a sandbox that serves many calls.  The stub (runner.stub) becomes its
keeper when its first job says ``context``: it stays PID 1 for the context's life, hands
each call to the interpreter process (forked from its warm heap, as the one-shot child
is), and does the workspace's file operations itself.  Protocol with the supervisor
(runner.context, outside):

- requests arrive on stdin, each a 4-byte length and a ``marshal`` document:
  ``{"op": "run", "code", "stdin", "timeoutMs", "graceMs", "resultsBytes", "figures"}``,
  ``{"op": "restart"}``,
  ``{"op": "list", "maxEntries"}``, ``{"op": "read", "path", "maxBytes"}``,
  ``{"op": "write", "path", "data"}``, ``{"op": "delete", "path"}``;
- each is answered on the status descriptor by one JSON line, followed by ``size``
  bytes when it says so (a file read).  An operation refused is ``{"error": RULE,
  "message": ...}``.

While a call runs, the keeper also takes ``{"op": "interrupt"}`` (its caller went away):
the call is then treated as one past its timeout, at once.

A call that outlives its timeout gets SIGINT (``KeyboardInterrupt`` in the code); if it
has not ended ``graceMs`` later, everything in the sandbox but the keeper is killed and
a fresh interpreter forked: the answer says ``restarted``, the workspace is kept.  The
keeper runs as the code's own uid in the code's own namespaces: the code could lie to it,
which only lets it lie about its own results.

Standard library only.  Compiled into the support directory as ``_kernel.pyc``.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import types

IDLE_TICK_S = 5.0
"""How often an idle keeper reaps orphans the code left (it is their PID 1)."""


class Child:
    """The interpreter process: its pid, the pipe its calls go to, the pipe it reports on."""

    def __init__(self, pid: int, job_w: int, violations_r: int) -> None:
        self.pid, self.job_w, self.violations_r = pid, job_w, violations_r
        self.status: int | None = None
        """Its wait status once it has ended and been reaped."""

    def close(self) -> None:
        for fd in (self.job_w, self.violations_r):
            try:
                os.close(fd)
            except OSError:
                pass


class Keeper:
    """PID 1 of a context's sandbox: calls, restarts and file operations, one at a time."""

    def __init__(
        self,
        stub: types.ModuleType,
        setup: dict[str, object],
        status_fd: int,
        child: Child,
        forwarder: object,
        files: types.ModuleType,
    ) -> None:
        self.stub, self.status_fd, self.child = stub, status_fd, child
        self.forwarder, self.files = forwarder, files
        self.setup = setup
        self.workspace = str(setup["workspace"])
        self.protected = frozenset(str(p).rstrip("/") for p in setup["protected"])  # type: ignore[attr-defined]
        self.max_violations = int(setup["maxViolations"])  # type: ignore[call-overload]
        self.events_fd = -1
        """Where each interpreter reports its results and violations as they happen."""

    def answer(self, message: dict[str, object], data: bytes = b"") -> None:
        view = memoryview(self.stub._json(message).encode() + b"\n" + data)
        while view:
            view = view[os.write(self.status_fd, view) :]

    def wait(self, watched: dict[int, str], timeout_s: float | None) -> str | None:
        """Until one of ``watched`` is readable (its name), relaying the egress port."""
        if self.forwarder is not None:
            return self.forwarder.until(watched, timeout_s)  # type: ignore[attr-defined, no-any-return]
        import select

        ready, _, _ = select.select(list(watched), [], [], timeout_s)
        return watched[ready[0]] if ready else None

    # --- processes -------------------------------------------------------------------

    def reap(self) -> None:
        """Collect every ended process (orphans of the code come to PID 1)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.child.pid:
                self.child.status = status

    def kill_all(self) -> None:
        """Kill everything in the sandbox but this process, and reap it all."""
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        while True:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                return
            if pid == self.child.pid:
                self.child.status = status

    def restart(self) -> None:
        """A fresh interpreter: everything running now is killed; the files stay."""
        self.kill_all()
        self.child.close()
        pid, job_w, violations_r = self.stub._fork_child(
            self.status_fd, self.forwarder, self.events_fd
        )
        self.child = Child(pid, job_w, violations_r)
        self.stub._send_message(job_w, self.setup)

    def ended(self) -> bool:
        self.reap()
        return self.child.status is not None

    def discard_reports(self) -> None:
        """What the code's background work reported between calls belongs to no call."""
        self._read_reports()

    # --- one call --------------------------------------------------------------------

    def run(self, request: dict[str, object]) -> dict[str, object]:
        restarted = False
        if self.ended():  # the code ended its interpreter after its last call
            self.restart()
            restarted = True
        self.discard_reports()
        timeout_s = int(request["timeoutMs"]) / 1000  # type: ignore[call-overload]
        grace_s = int(request["graceMs"]) / 1000  # type: ignore[call-overload]
        deadline = time.monotonic() + timeout_s
        call = {
            "code": request["code"],
            "stdin": request.get("stdin"),
            "resultsBytes": request.get("resultsBytes"),
            "figures": request.get("figures"),
        }
        taken = self._send_call(call, deadline)
        sent = taken == "sent"
        interrupted = taken == "late"  # it would not take the call within its timeout
        reports = b""
        pidfd = os.pidfd_open(self.child.pid)
        try:
            while sent:
                which = self.wait(
                    {self.child.violations_r: "reports", pidfd: "child", 0: "request"},
                    max(0.0, deadline - time.monotonic()),
                )
                if which == "request":
                    asked = self.stub._read_message(0)
                    if asked is None:  # the supervisor is gone: so is the sandbox, soon
                        break
                    if asked.get("op") == "interrupt" and not interrupted:
                        deadline = time.monotonic()  # as at the timeout, now
                    continue
                if which == "reports":
                    more, ended = self._read_reports()
                    reports += more
                    done = _done_line(reports)
                    if done is not None:
                        return self._finished(reports, done, interrupted, restarted)
                    if ended or len(reports) > 1 << 20:  # gone, or flooding the pipe
                        break
                elif which == "child":
                    break
                elif not interrupted:
                    # The code's own KeyboardInterrupt: its state is kept if it stops.
                    try:
                        os.kill(self.child.pid, signal.SIGINT)
                    except ProcessLookupError:
                        pass
                    interrupted = True
                    deadline = time.monotonic() + grace_s
                else:
                    break
        finally:
            os.close(pidfd)
        reports += self._read_reports()[0]
        self.kill_all()
        status = self.child.status
        self.restart()
        answer = self._finished(reports, None, interrupted, True)
        if status is not None and not interrupted:
            answer["exitCode"] = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
            answer["signal"] = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        return answer

    def _send_call(self, call: dict[str, object], deadline: float) -> str:
        """Hand the call to the interpreter by ``deadline``: ``sent``; ``ended`` (it is
        gone), or ``late`` (it stopped reading: the code can keep it busy between calls,
        and a call that does not fit the pipe would wait for it forever)."""
        import select

        view = memoryview(self.stub._framed(call))
        fd = self.child.job_w
        os.set_blocking(fd, False)
        while view:
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([], [fd], [], left)[1]:
                    return "late"
            except OSError:  # BrokenPipeError
                return "ended"
        return "sent"

    def _read_reports(self) -> tuple[bytes, bool]:
        """What the interpreter reported so far, and whether its end of the pipe is closed
        (it has ended: a pipe at its end stays readable)."""
        chunks: list[bytes] = []
        while True:
            try:
                chunk = os.read(self.child.violations_r, 1 << 16)
            except (BlockingIOError, OSError):
                return b"".join(chunks), False
            if not chunk:
                return b"".join(chunks), True
            chunks.append(chunk)

    def _finished(
        self, reports: bytes, done: list[bytes] | None, interrupted: bool, restarted: bool
    ) -> dict[str, object]:
        limit = 4 * self.stub.MAX_VIOLATION_BYTES
        violations = [
            line[:limit].decode("utf-8", "replace")
            for line in reports.splitlines()
            if line and not line.startswith(b"D ")
        ][: self.max_violations]
        answer: dict[str, object] = {
            "timedOut": interrupted,
            "restarted": restarted,
            "exitCode": None,
            "signal": None,
            "violations": violations,
        }
        if done is not None:
            try:
                answer["exitCode"] = int(done[0])
                answer["cpuUserMs"] = round(float(done[1]) * 1000, 3)
                answer["cpuSystemMs"] = round(float(done[2]) * 1000, 3)
                answer["maxRssKb"] = int(done[3])
            except (IndexError, ValueError):
                pass
        return answer

    # --- the workspace ---------------------------------------------------------------

    def file_operation(self, request: dict[str, object]) -> tuple[dict[str, object], bytes]:
        op, files = request.get("op"), self.files
        try:
            if op == "list":
                listed, complete = files.list_files(
                    self.workspace,
                    self.protected,
                    int(request["maxEntries"]),  # type: ignore[call-overload]
                    int(request["maxBytes"]),  # type: ignore[call-overload]
                )
                return {"files": listed, "complete": complete}, b""
            path = str(request["path"])
            if op == "read":
                data = files.read_file(self.workspace, path, int(request["maxBytes"]))  # type: ignore[call-overload]
                return {"size": len(data)}, data
            if op == "write":
                files.write_file(self.workspace, path, request["data"], self.protected)
                return {"done": True}, b""
            if op == "delete":
                files.delete_path(self.workspace, path, self.protected)
                return {"done": True}, b""
        except files.Refused as exc:
            return {"error": exc.rule, "message": exc.message}, b""
        except OSError as exc:  # the workspace as the code left it: never the keeper's end
            return {"error": "not_possible", "message": f"{exc.strerror or exc}"}, b""
        return {"error": "unknown_operation", "message": f"no operation {op!r}"}, b""

    def serve(self) -> None:
        """Configure the warm interpreter, say ready, then answer requests until the
        supervisor closes stdin (then the sandbox ends)."""
        # The code runs as this process's uid: it could trace it, or write its memory
        # through /proc/1/mem, and then answer the supervisor in its name.  Not dumpable,
        # this process is out of its reach (and the supervisor trusts none of it anyway).
        set_dumpable(False)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the code's os.kill(1, SIGINT)
        self.stub._send_message(self.child.job_w, self.setup)
        self.answer({"context": "ready"})
        while True:
            if self.wait({0: "request"}, IDLE_TICK_S) is None:
                self.reap()
                continue
            request = self.stub._read_message(0)
            if request is None:
                return
            op = request.get("op")
            if op == "interrupt":
                continue  # for a call that has ended meanwhile: nothing to interrupt
            if op == "run":
                self.answer(self.run(request))
            elif op == "restart":
                self.restart()
                self.answer({"restarted": True})
            else:
                self.answer(*self.file_operation(request))
            self.reap()


def set_dumpable(dumpable: bool) -> None:
    """prctl(PR_SET_DUMPABLE): whether processes of the same uid may trace this one, or
    read and write its memory and descriptors through /proc.  A failure fails the
    context (closed: a keeper the code could take over is not started)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(4, 1 if dumpable else 0, 0, 0, 0) != 0:  # 4: PR_SET_DUMPABLE
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE) failed")


def _done_line(reports: bytes) -> list[bytes] | None:
    """The interpreter's ``D exit user system rss`` line, once it has come."""
    for line in reports.split(b"\n")[:-1]:  # complete lines only
        if line.startswith(b"D "):
            return line.split()[1:]
    return None


def interpret(
    stub: types.ModuleType,
    setup: dict[str, object],
    job_fd: int,
    reports_fd: int,
    events_fd: int,
) -> None:
    """The interpreter process: runs each call's code in one ``__main__``.  Never returns.

    Each call ends with ``D exit user system rss`` on ``reports_fd`` (after the code's
    output is flushed, and the figures it left open shown), where the code's violations
    are reported too; its results and violations go to ``events_fd`` as they happen.
    """
    import resource

    set_dumpable(True)  # forked from a keeper that is not: its own /proc is the code's
    stub._first_to_go_when_out_of_memory()
    stub._install_stdin(None)  # never the supervisor's request pipe
    env = setup.get("env")
    if isinstance(env, dict):
        os.environ.update({str(k): str(v) for k, v in env.items()})
    limits = setup.get("limits")
    stub._apply_limits(limits if isinstance(limits, dict) else {})
    os.chdir(str(setup["workspace"]))
    seen: set[tuple[str, str]] = set()
    sys.addaudithook(stub._violation_hook(reports_fd, setup, seen, events_fd))
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = __builtins__
    sys.modules["__main__"] = main
    sys.argv = [""]
    sys.path.insert(0, "")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only a call's code is interrupted
    while True:
        call = stub._read_message(job_fd)
        if call is None:
            os._exit(0)
        seen.clear()
        stdin = call.get("stdin")
        stub._install_stdin(stdin if isinstance(stdin, str) else None)
        sys.stdin = open(0, encoding="utf-8", errors="surrogateescape", closefd=False)  # noqa: SIM115
        before = _cpu(resource)
        display = stub._start_display(events_fd, call)
        exit_code = _run(stub, main, str(call["code"]), display)
        display.show_figures()
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                if stream is not None:
                    stream.flush()
            except Exception:  # noqa: S112 - a broken stream cannot be reported anywhere
                continue
        after = _cpu(resource)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        line = b"D %d %r %r %d\n" % (
            exit_code,
            max(0.0, after[0] - before[0]),
            max(0.0, after[1] - before[1]),
            rss,
        )
        try:
            os.write(reports_fd, line)
        except OSError:
            os._exit(1)


def _cpu(resource: types.ModuleType) -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    waited = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + waited.ru_utime, own.ru_stime + waited.ru_stime


def _run(
    stub: types.ModuleType, main: types.ModuleType, code: str, display: types.ModuleType
) -> int:
    """One call's code in the context's ``__main__``: its exit code, as ``python -c``'s;
    the value of a trailing expression is shown (runner.display)."""
    try:
        try:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            body, last = display.split(compile(code, "<string>", "exec", stub._ONLY_AST), code)
            exec(compile(body, "<string>", "exec"), main.__dict__)
            if last is not None:
                display.show_value(eval(compile(last, "<string>", "eval"), main.__dict__))  # noqa: S307
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    except SystemExit as exc:  # ends the call, not the context
        return int(stub._exit_code(exc.code))
    except BaseException as exc:
        # Hide this file's frame: the traceback starts at the user's code.
        tb = exc.__traceback__.tb_next if exc.__traceback__ else None
        sys.excepthook(type(exc), exc.with_traceback(tb), tb)
        return 1
    return 0
