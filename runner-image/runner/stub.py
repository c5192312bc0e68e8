"""Runs inside the sandbox: waits for one job, runs it in a child process, reports how it ended.

This file is started by bubblewrap before any request arrives (``python3 -I stub.py FD
EVENTS``),
so the interpreter start-up is paid ahead of time.  Protocol with the supervisor:

- the job arrives on stdin as one ``marshal`` document (from the trusted supervisor; it
  is built in, so no JSON module with its regular-expression engine is imported here),
  after its length (4 bytes, big-endian);
- fd ``EVENTS`` (the events pipe) is the code's process's own: rich results and the
  violations it meets, one line each as they happen (see _display);
- fd ``FD`` (the status pipe) carries ``ready\\n`` once the interpreter is warm, then
  one JSON line describing how the child ended (exit status, resource usage, violations).
  The child's violation records are passed on as strings, unparsed: the supervisor
  parses them, with limits, as the untrusted data they are;
- then a JSON manifest line of the files the code wrote (see _sandbox_files, compiled
  from runner/sandbox_files.py), followed by their bytes back to back.

The job's input files are written before the code starts; the job's timeout is applied
here too (then everything else in the sandbox is killed and the files collected), while
the supervisor keeps its own, later, deadline as the backstop.

The user's code runs in a forked child so that the parent can report its exact exit
status and resource usage.  Everything this process reports is untrusted by the
supervisor: the user's code runs as the same uid in the same sandbox and could tamper
with it, which would only let it lie about its own result.

Standard library only, and as few imports as possible: this runs once per execution.
"""

from __future__ import annotations

import gc
import marshal
import os
import resource
import select
import sys
import types

TYPE_CHECKING = False  # typing's own costs an import at every start; mypy knows the name
if TYPE_CHECKING:
    import socket

SITE_CONFIG = "site.marshal"
EGRESS_OPTION = "--egress="  # runner.policy.egress_option writes it: that is the rule
MAX_VIOLATION_BYTES = 256

# Devices the code may write to, besides the writable directories the job names.
WRITABLE_DEVICES = frozenset(
    {
        "/dev/null",
        "/dev/zero",
        "/dev/full",
        "/dev/tty",
        "/dev/stdout",
        "/dev/stderr",
        "/proc/self/fd/1",
        "/proc/self/fd/2",
    }
)
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _json(value: object) -> str:
    """A minimal JSON encoder for the few types of the status line (no json import)."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        text = value.encode("utf-8", "replace").decode("utf-8")  # no lone surrogates
        return (
            '"'
            + "".join(_ESCAPES.get(c) or (c if c >= " " else f"\\u{ord(c):04x}") for c in text)
            + '"'
        )
    if isinstance(value, dict):
        return "{" + ",".join(f"{_json(str(k))}:{_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_json(v) for v in value) + "]"
    return _json(str(value))


def _read_exact(fd: int, size: int) -> bytes | None:
    """``size`` bytes from ``fd``; None at an end of file before them."""
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_message(fd: int) -> dict[str, object] | None:
    """One message (a 4-byte big-endian length, then ``marshal``); None at end of file."""
    head = _read_exact(fd, 4)
    body = _read_exact(fd, int.from_bytes(head, "big")) if head is not None else None
    if body is None:
        return None
    message = marshal.loads(body)  # noqa: S302 - written by our own supervisor
    if not isinstance(message, dict):
        raise ValueError("a message must be a dict")
    return message


def _read_job(fd: int = 0) -> dict[str, object]:
    job = _read_message(fd)
    if job is None:
        # The supervisor went away before sending a job (it was shut down): nothing to do.
        os._exit(0)
    return job


def _install_stdin(data: str | None) -> None:
    if data is None:
        fd = os.open("/dev/null", os.O_RDONLY)
    else:
        # A memfd holds stdin whatever its size, with no writer thread and no file on disk.
        fd = os.memfd_create("stdin", 0)
        os.write(fd, data.encode("utf-8", "surrogateescape"))
        os.lseek(fd, 0, os.SEEK_SET)
    os.dup2(fd, 0)
    os.close(fd)


def _apply_limits(limits: dict[str, int]) -> None:
    pairs = {
        "memoryBytes": resource.RLIMIT_AS,
        "maxProcesses": resource.RLIMIT_NPROC,
        "maxFileBytes": resource.RLIMIT_FSIZE,
        "maxOpenFiles": resource.RLIMIT_NOFILE,
        "cpuSeconds": resource.RLIMIT_CPU,
    }
    for key, which in pairs.items():
        value = limits.get(key)
        if value is not None:
            resource.setrlimit(which, (int(value), int(value)))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _violation_hook(
    fd: int, job: dict[str, object], seen: set[tuple[str, str]] | None = None, events_fd: int = -1
) -> object:
    """Build an audit hook that reports denied operations on ``fd`` (one JSON line each),
    and as they happen on ``events_fd`` (``{"violation": ...}``: streamed to the caller).

    What is hidden, writable and protected comes with the job (runner.policy.sandbox_view).
    Each (kind, target) is reported once while it is in ``seen`` (a context empties it
    before each call), at most ``maxViolations`` of them.
    """
    hidden = tuple(str(p) for p in job["hiddenPaths"])  # type: ignore[attr-defined]
    visible = tuple(str(p) for p in job["visiblePaths"])  # type: ignore[attr-defined]
    writable = tuple(str(p).rstrip("/") + "/" for p in job["writableDirs"])  # type: ignore[attr-defined]
    shown = [str(p) for p in job["protected"]]  # type: ignore[attr-defined]
    protected = tuple(f"{job['workspace']}/{p.rstrip('/')}" for p in shown)
    protected_detail = "write denied: " + " and ".join(shown) + " are protected"
    dirs = [p.rstrip("/") for p in writable]
    writable_detail = f"write denied: only {', '.join(dirs[:-1])} and {dirs[-1]} are writable"
    max_violations = int(job["maxViolations"])  # type: ignore[call-overload]
    egress = job.get("egress")
    if isinstance(egress, dict):
        direct = f"network denied: only the proxy at {egress['proxy']} leads out"
        lookup = "name resolution is not available in the sandbox: the proxy resolves names"
    else:
        direct = "network denied: the sandbox has no network access"
        lookup = "network denied: name resolution is not available in the sandbox"
    seen = set() if seen is None else seen
    # The events pipe's one writer (its lock keeps long lines whole), in the code's process.
    events = getattr(sys.modules.get("_display"), "CHANNEL", None) if events_fd >= 0 else None
    abspath = os.path.abspath
    fspath = os.fsdecode

    def report(kind: str, target: str, detail: str) -> None:
        key = (kind, target)
        if key in seen or len(seen) >= max_violations:
            return
        seen.add(key)
        line = _json({"kind": kind, "target": target[:MAX_VIOLATION_BYTES], "detail": detail})
        try:
            os.write(fd, line.encode() + b"\n")
        except OSError:
            pass
        if events is not None:
            events.write_line('{"violation":' + line + "}")

    def under(path: str, roots: tuple[str, ...]) -> bool:
        return any(path == r or path.startswith(r + "/") for r in roots)

    def is_hidden(path: str) -> bool:
        # A path mounted on purpose (a Python environment under /var, say) is not hidden.
        return under(path, hidden) and not under(path, visible)

    def check_path(raw: object, writing: bool) -> None:
        if isinstance(raw, int) or raw is None:
            return
        try:
            path = abspath(fspath(raw))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return
        if is_hidden(path):
            report("filesystem", path, "denied: path is not visible in the sandbox")
        elif not writing:
            return
        elif under(path, protected):
            report("filesystem", path, protected_detail)
        elif path not in WRITABLE_DEVICES and not (path + "/").startswith(writable):
            report("filesystem", path, writable_detail)

    def hook(event: str, args: tuple[object, ...]) -> None:
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and bool(flags & WRITE_FLAGS)
            )
            check_path(path, writing)
        elif event in ("os.listdir", "os.scandir"):
            check_path(args[0], False)
        elif event in (
            "os.mkdir",
            "os.remove",
            "os.rmdir",
            "os.truncate",
            "os.chmod",
            "os.chown",
            "os.utime",
        ):
            check_path(args[0], True)
        elif event == "os.rename":  # (src, dst, ...): both places change
            check_path(args[0], True)
            check_path(args[1], True)
        elif event in ("os.symlink", "os.link"):  # (src, dst, ...): only dst is written
            check_path(args[1], True)
        elif event == "socket.connect" or event == "socket.sendto":
            address = args[1]
            if (
                isinstance(address, tuple)
                and address
                and isinstance(address[0], str)
                and not _is_loopback(address[0])
            ):
                report("network", f"{address[0]}:{address[1]}", direct)
        elif event == "socket.getaddrinfo":
            name = args[0]
            host = name.decode("ascii", "replace") if isinstance(name, bytes) else name
            if isinstance(host, str) and host and not _is_loopback(host):
                report("network", f"{host}:{args[1]}", lookup)

    return hook


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1", "") or host.startswith("127.")


def _first_to_go_when_out_of_memory() -> None:
    """At a memory limit, the kernel kills the code (and what it starts), never its supervisors.

    Raising one's own oom_score_adj needs no privilege; the code cannot lower it again.
    """
    try:
        with open("/proc/self/oom_score_adj", "w") as adj:
            adj.write("1000")
    except OSError:
        pass


def _run_child(job_fd: int, violations_fd: int, events_fd: int) -> None:
    """The user's code: becomes ``python -c CODE`` as closely as possible.  Never returns.

    This process was forked while the sandbox warmed up and waits here for the job, so
    neither the fork nor most of its copy-on-write faults fall on the request's path.
    """
    _first_to_go_when_out_of_memory()
    job = _read_job(job_fd)
    if job.get("context"):
        kernel = _beside("_kernel")
        kernel.interpret(sys.modules[__name__], job, job_fd, violations_fd, events_fd)
    os.close(job_fd)
    # The baseline lets the parent report the code's CPU time, not the warm-up's.
    before = resource.getrusage(resource.RUSAGE_SELF)
    os.write(violations_fd, b"B %r %r\n" % (before.ru_utime, before.ru_stime))
    stdin = job.get("stdin")
    _install_stdin(stdin if isinstance(stdin, str) else None)
    env = job.get("env")
    if isinstance(env, dict):
        os.environ.update({str(k): str(v) for k, v in env.items()})
    limits = job.get("limits")
    _apply_limits(limits if isinstance(limits, dict) else {})
    os.chdir(str(job["workspace"]))
    display = _start_display(events_fd, job)
    sys.addaudithook(_violation_hook(violations_fd, job, None, events_fd))  # type: ignore[arg-type]

    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = __builtins__
    sys.modules["__main__"] = main
    sys.argv = ["-c"]
    sys.path.insert(0, "")  # as `python -c` does: modules in the workspace are importable
    code = str(job["code"])
    try:
        body, last = display.split(compile(code, "<string>", "exec", _ONLY_AST), code)
        exec(compile(body, "<string>", "exec"), main.__dict__)
        if last is not None:
            display.show_value(eval(compile(last, "<string>", "eval"), main.__dict__))  # noqa: S307
        exit_code = 0
    except SystemExit as exc:
        exit_code = _exit_code(exc.code)
    except BaseException as exc:
        # Hide this file's frame: the traceback starts at the user's code, as with `python -c`.
        tb = exc.__traceback__.tb_next if exc.__traceback__ else None
        sys.excepthook(type(exc), exc.with_traceback(tb), tb)
        exit_code = 1
    display.show_figures()  # figures the code left open are its results, as in a notebook
    _finish(main, exit_code)


_ONLY_AST = 0x400  # ast.PyCF_ONLY_AST, without importing ast


def _start_display(events_fd: int, job: dict[str, object]) -> types.ModuleType:
    """The code's process's display machinery (_display), started for this run: results
    up to the job's budget on ``events_fd``, standard output flushed line by line so that
    what is printed streams out as it is printed."""
    display = sys.modules["_display"]
    display.CHANNEL.start(events_fd, int(job.get("resultsBytes") or 0), job.get("figures"))  # type: ignore[call-overload]
    display.install()
    try:
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    except (AttributeError, ValueError):
        pass
    return display


def _exit_code(code: object) -> int:
    """What the interpreter does with ``SystemExit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _finish(main: types.ModuleType, exit_code: int) -> None:
    """End the child the way the interpreter would, minus the costly module teardown.

    Non-daemon threads are joined and exit handlers run, as at a normal exit; the code's
    own namespace is released so that files it left open are flushed and closed.  Then
    the process leaves with ``os._exit``: tearing down every module of a forked
    interpreter costs more CPU than running a small program.
    """
    try:
        threading = sys.modules.get("threading")
        if threading is not None:
            threading._shutdown()
        import atexit

        atexit._run_exitfuncs()
        main.__dict__.clear()
        gc.collect()
    except SystemExit as exc:  # an exit handler may call sys.exit() itself
        exit_code = _exit_code(exc.code)
    except BaseException as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a broken stream cannot be reported anywhere
            exit_code = exit_code or 120  # what the interpreter returns when flushing fails
    os._exit(exit_code)


def _report(
    status_fd: int,
    status: int,
    usage: resource.struct_rusage,
    violations_fd: int,
    timed_out: bool,
    max_violations: int,
) -> None:
    chunks = []
    while True:
        try:
            chunk = os.read(violations_fd, 1 << 16)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    lines = b"".join(chunks).splitlines()
    base_user = base_system = 0.0
    if lines and lines[0].startswith(b"B "):
        try:
            base_user, base_system = (float(v) for v in lines.pop(0).split()[1:3])
        except ValueError:
            pass
    violations = [
        line[: 4 * MAX_VIOLATION_BYTES].decode("utf-8", "replace")
        for line in lines[:max_violations]
    ]
    message = {
        "timedOut": timed_out,
        "exitCode": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        "cpuUserMs": round(max(0.0, usage.ru_utime - base_user) * 1000, 3),
        "cpuSystemMs": round(max(0.0, usage.ru_stime - base_system) * 1000, 3),
        "maxRssKb": usage.ru_maxrss,
        "violations": violations,
    }
    os.write(status_fd, _json(message).encode() + b"\n")


class _Forwarder:
    """The sandbox's loopback proxy port, forwarded to the execution's egress socket.

    Runs in this process's own loop while it waits for the child (no thread, so no task
    of the execution's is spent on it), and only when the job allows a domain.  The
    port is bound while the sandbox warms up, before the code exists, so the code cannot
    take it; a job that allows no domain closes it.  Each connection
    gets a connection of its own to the socket, where the controller's proxy decides.
    """

    def __init__(self, socket_path: str, port: int) -> None:
        import selectors  # while the sandbox warms up: nothing of this on a request's path
        import socket

        self._socket = socket
        self._path = socket_path
        self._selector = selectors.DefaultSelector()
        self._read = selectors.EVENT_READ
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen(128)
        self._selector.register(self._listener, self._read, None)

    def close(self) -> None:
        """Stop listening (in the code's process, or when the job allows no domain)."""
        self._selector.close()
        self._listener.close()

    def wait(self, pidfd: int, timeout_s: float | None) -> bool:
        """Forward until the child exits (the pidfd is readable); True on the timeout."""
        return self.until({pidfd: "child"}, timeout_s) is None

    def until(self, watched: dict[int, str], timeout_s: float | None) -> str | None:
        """Forward until one of ``watched`` is readable: its name; None on the timeout."""
        import time

        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for fd, name in watched.items():
            self._selector.register(fd, self._read, name)
        try:
            while True:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                for key, _ in self._selector.select(left):
                    if isinstance(key.data, str):
                        return key.data
                    if key.data is None:
                        self._accept()
                    else:
                        self._relay(key.fileobj, key.data)  # type: ignore[arg-type]
        finally:
            for fd in watched:
                self._selector.unregister(fd)

    def _accept(self) -> None:
        socket = self._socket
        try:
            client, _ = self._listener.accept()
        except OSError:
            return
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # A peer that stops reading stalls this loop (which also keeps the job's
        # timeout) at most this long per send; then its connection ends.
        for sock in (client, upstream):
            sock.settimeout(2)
        try:
            upstream.connect(self._path)
        except OSError:
            client.close()  # the proxy is gone: the client sees a closed connection
            upstream.close()
            return
        self._selector.register(client, self._read, upstream)
        self._selector.register(upstream, self._read, client)

    def _relay(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            data = source.recv(1 << 16)
            if data:
                sink.sendall(data)
                return
        except OSError:
            pass
        for sock in (source, sink):  # one side ended: so does the connection
            try:
                self._selector.unregister(sock)
            except (KeyError, ValueError):
                pass
            sock.close()


def _wait(pid: int, timeout_ms: int | None, forwarder: _Forwarder | None = None) -> bool:
    """Wait for the child; True when the timeout came first (the child is still running)."""
    if timeout_ms is None and forwarder is None:
        return False
    pidfd = os.pidfd_open(pid)
    timeout_s = None if timeout_ms is None else timeout_ms / 1000
    try:
        if forwarder is not None:
            return forwarder.wait(pidfd, timeout_s)
        ready, _, _ = select.select([pidfd], [], [], timeout_s)
    finally:
        os.close(pidfd)
    return not ready


def _send_files(status_fd: int, harvest: object) -> None:
    """The files the code wrote: a JSON manifest line, then their bytes back to back."""
    manifest = {"files": harvest.files, "skipped": harvest.skipped}  # type: ignore[attr-defined]
    os.write(status_fd, _json(manifest).encode() + b"\n")
    for chunk in harvest.chunks:  # type: ignore[attr-defined]
        view = memoryview(chunk)
        while view:
            view = view[os.write(status_fd, view) :]


def _site(config_path: str) -> None:
    """What the site module does at start-up, minus sitecustomize and path scanning.

    The interpreter runs with -S; the paths site would add (and the prefixes of a
    virtual environment) were recorded once by support.site_config, with site enabled.
    """
    try:
        with open(config_path, "rb") as config_file:
            config = marshal.load(config_file)  # noqa: S302 - written by our own service
    except OSError:
        return
    import site

    for path in config["paths"]:
        site.addsitedir(path)  # also runs the .pth files there, as site would
    sys.prefix, sys.exec_prefix = config["prefix"], config["exec_prefix"]
    site.setquit()
    site.setcopyright()
    site.sethelper()


def _seed(source: str, target: str) -> None:
    """Copy the prepared /tmp contents (caches such as matplotlib's font list) into /tmp."""
    try:
        entries = list(os.scandir(source))
    except OSError:
        return
    for entry in entries:
        destination = os.path.join(target, entry.name)
        if entry.is_dir(follow_symlinks=False):
            os.makedirs(destination, exist_ok=True)
            _seed(entry.path, destination)
        elif entry.is_file(follow_symlinks=False):
            with open(entry.path, "rb") as src, open(destination, "wb") as dst:
                dst.write(src.read())


def _framed(message: dict[str, object]) -> bytes:
    """One message as _read_message reads it: its length (4 bytes, big-endian), then it."""
    body = marshal.dumps(message)
    return len(body).to_bytes(4, "big") + body


def _send_message(fd: int, message: dict[str, object]) -> bool:
    """Write one message (see _read_message); False when the reader is gone."""
    view = memoryview(_framed(message))
    try:
        while view:
            view = view[os.write(fd, view) :]
    except BrokenPipeError:
        return False
    return True


def _send_job(fd: int, job: dict[str, object]) -> None:
    _send_message(fd, job)  # a child that is gone: its exit status tells the rest
    os.close(fd)


def _preload(modules: list[str]) -> None:
    """Import what the service asked for (SANDBOX_PRELOAD) before the code's process forks.

    A module that cannot be imported is skipped: the code gets the same error itself if
    it imports it.  Runs before the job exists, so nothing of a request is involved.
    """
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: S112 - any failure means "not preloaded", nothing more
            continue


def _beside(name: str) -> types.ModuleType:
    """A module compiled beside this file (runner.bwrap.SANDBOX_CODE), imported."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[0])))
    try:
        return __import__(name)
    finally:
        del sys.path[0]


def _fork_child(
    status_fd: int, forwarder: _Forwarder | None, events_fd: int
) -> tuple[int, int, int]:
    """Fork the process that will run the code: (its pid, its job pipe, its violations).

    The child waits for its job (_run_child); it keeps none of this process's descriptors.
    """
    job_r, job_w = os.pipe2(os.O_CLOEXEC)
    violations_r, violations_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    pid = os.fork()
    if pid == 0:
        gc.enable()
        if forwarder is not None:
            forwarder.close()
        os.close(status_fd)
        os.close(job_w)
        os.close(violations_r)
        _run_child(job_r, violations_w, events_fd)
    os.close(job_r)
    os.close(violations_w)
    return pid, job_w, violations_r


def main() -> None:
    status_fd, events_fd = int(sys.argv[1]), int(sys.argv[2])
    for fd in (status_fd, events_fd):  # never passed on to what the code starts
        os.set_inheritable(fd, False)
    here = os.path.dirname(os.path.abspath(sys.argv[0]))
    sandbox_files = _beside("_sandbox_files")
    _beside("_display")
    _site(os.path.join(here, SITE_CONFIG))
    _seed(os.path.join(here, "tmp-seed"), "/tmp")
    options = [a for a in sys.argv[3:] if a.startswith(EGRESS_OPTION)]
    _preload([a for a in sys.argv[3:] if not a.startswith(EGRESS_OPTION)])
    forwarder = None
    if options:  # --egress=SOCKET:PORT (runner.bwrap): this sandbox may be given a domain
        socket_path, _, port = options[0][len(EGRESS_OPTION) :].rpartition(":")
        forwarder = _Forwarder(socket_path, int(port))
    # Keep the warm heap out of the collector's reach, so the child does not copy
    # every page just by running a collection (copy-on-write after fork).
    gc.disable()
    gc.freeze()
    pid, job_w, violations_r = _fork_child(status_fd, forwarder, events_fd)
    os.write(status_fd, b"ready\n")
    job = _read_job()
    workspace = str(job["workspace"])
    protected = frozenset(str(p).rstrip("/") for p in job["protected"])  # type: ignore[attr-defined]
    try:
        inputs = sandbox_files.write_inputs(workspace, job.pop("files", None) or [], protected)
    except (OSError, ValueError) as exc:
        os.write(status_fd, _json({"setupError": f"input files: {exc}"}).encode() + b"\n")
        return
    if forwarder is not None and not job.get("egress"):
        forwarder.close()
        forwarder = None
    if job.get("context"):
        # A code context: this process keeps the sandbox for many calls (runner.kernel).
        kernel = _beside("_kernel")
        child = kernel.Child(pid, job_w, violations_r)
        stub = sys.modules[__name__]
        keeper = kernel.Keeper(stub, job, status_fd, child, forwarder, sandbox_files)
        keeper.events_fd = events_fd  # each interpreter it forks reports there
        keeper.serve()
        return
    os.close(events_fd)  # the code's process has its own
    _send_job(job_w, job)
    timeout_ms = job.get("timeoutMs")
    timed_out = _wait(pid, timeout_ms if isinstance(timeout_ms, int) else None, forwarder)
    # Whatever is still running (the code on a timeout, daemons it left behind) is killed
    # before the workspace is read: nothing can change the files while they are collected.
    try:
        os.kill(-1, 9)
    except ProcessLookupError:
        pass  # nothing else was running
    _, status, usage = os.wait4(pid, 0)
    _report(status_fd, status, usage, violations_r, timed_out, int(job["maxViolations"]))  # type: ignore[call-overload]
    limits = job.get("harvest")
    harvest = sandbox_files.Harvest(0, 0, 0, protected)
    if isinstance(limits, dict):
        harvest = sandbox_files.Harvest(
            limits["maxFiles"], limits["maxFileBytes"], limits["maxTotalBytes"], protected
        )
        harvest.collect(workspace, inputs)
    _send_files(status_fd, harvest)


if __name__ == "__main__":
    main()
