"""Attacks on the sandbox's isolation: each test tries to break one promise of the policy."""

from __future__ import annotations

import http.server
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ROOT, ServiceProcess, parent_pid, wait_for


def run_ok(service: ServiceProcess, code: str) -> str:
    result = service.execute(code)
    assert result["exitCode"] == 0, result
    return str(result["stdout"])


@pytest.fixture
def loopback_http_server() -> Iterator[int]:
    """A real HTTP server on the host's loopback: the sandbox must not reach it."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


# --- network -------------------------------------------------------------------------------


def test_host_loopback_services_are_unreachable(
    service: ServiceProcess, loopback_http_server: int
) -> None:
    result = service.execute(
        "import socket\n"
        f"socket.create_connection(('127.0.0.1', {loopback_http_server}), timeout=2)\n"
    )
    assert result["exitCode"] == 1
    assert "ConnectionRefusedError" in result["stderr"]


# --- filesystem ----------------------------------------------------------------------------


def test_private_tmp_is_writable_and_private(service: ServiceProcess) -> None:
    marker = f"sandbox-tmp-{uuid.uuid4().hex}"
    run_ok(service, f"open('/tmp/{marker}', 'w').write('x'); open('/dev/shm/{marker}', 'w')")
    assert not Path("/tmp", marker).exists()
    assert not Path("/dev/shm", marker).exists()
    assert run_ok(service, f"import os; print(os.path.exists('/tmp/{marker}'))") == "False\n"


def test_host_files_are_not_visible(service: ServiceProcess) -> None:
    # Nothing of these host paths is there.  (/var, or a home directory when the service
    # runs from one, may exist only as the path down to the mounted Python environment.)
    hidden = [
        "/root/.ssh",
        "/root/.bashrc",
        "/home/tester/.bashrc",
        "/etc/shadow",
        "/etc/ssh",
        "/etc/ssl/private",
        "/var/log",
        "/var/lib/dpkg",
        "/var/cache",
        "/var/lib/sandbox-controller/sandbox-support",
        str(ROOT / "pyproject.toml"),
        str(ROOT / ".git"),
        str(ROOT / "controller"),
        "/proc/1/root/root",
        "/sys",
        "/run",
        service.state_dir,
        "/opt",
        "/srv",
    ]
    out = run_ok(service, f"import os\nprint([p for p in {hidden!r} if os.path.exists(p)])")
    assert out == "[]\n"
    # Directories above a mounted path hold nothing but the way down to it.
    chains = run_ok(
        service,
        "import os\n"
        f"print([p for p in {['/root', '/home', '/var', str(ROOT)]!r}\n"
        "       if os.path.isdir(p) and len(os.listdir(p)) > 1])",
    )
    assert chains == "[]\n"


# --- environment and processes -------------------------------------------------------------


def test_service_environment_variables_do_not_leak(service: ServiceProcess) -> None:
    assert "AUTH_TOKEN" in service.env
    out = run_ok(service, "import os; print('AUTH_TOKEN' in os.environ, 'STATE_DIR' in os.environ)")
    assert out == "False False\n"


def test_no_new_privileges_and_dies_with_the_service() -> None:
    # A service of its own, killed with SIGKILL: its warm sandboxes must not outlive it.
    svc = ServiceProcess()
    try:
        assert "NoNewPrivs:\t1" in run_ok(svc, "print(open('/proc/self/status').read())")
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
        sandboxes = [p for p in pids if _parent_is(p, svc.proc.pid) and _is_bwrap(p)]
        assert sandboxes, "the service has no warm sandboxes to check"
        svc.proc.kill()
        svc.proc.wait()
        deadline = time.monotonic() + 5
        while any(os.path.exists(f"/proc/{p}") for p in sandboxes):
            assert time.monotonic() < deadline, "sandboxes outlived the service"
            time.sleep(0.02)
    finally:
        svc.stop()


def _is_bwrap(pid: str) -> bool:
    """A sandbox, not another child of the service (its cgroup janitor, a root sh)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"/usr/bin/bwrap")
    except OSError:
        return False


def _parent_is(pid: str, parent: int) -> bool:
    try:
        return parent_pid(pid) == parent
    except OSError:
        return False


def test_as_root_each_sandbox_runs_as_an_unprivileged_host_uid_of_its_own(
    service: ServiceProcess,
) -> None:
    if os.geteuid() != 0:
        pytest.skip("the service leases sandbox uids only when it runs as root")

    def sandboxes() -> list[str]:
        return [
            p
            for p in os.listdir("/proc")
            if p.isdigit() and _parent_is(p, service.proc.pid) and _is_bwrap(p)
        ]

    # The default service keeps four warm sandboxes (MAX_CONCURRENT_EXECUTIONS).
    found = wait_for(lambda: pids if len(pids := sandboxes()) >= 2 else None, what="2 sandboxes")
    seen: set[str] = set()
    for pid in found:
        status = Path(f"/proc/{pid}/status").read_text()
        uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
        groups = next(line for line in status.splitlines() if line.startswith("Groups:"))
        uid = uids[0]
        assert uids == [uid] * 4, status
        assert 63000 <= int(uid) < 64000, "within SANDBOX_UID's range"
        assert groups.split()[1:] == [uid], "its own gid, no other group"
        seen.add(uid)
    assert len(seen) == len(found), "no two sandboxes share a uid"


# --- the kernel's per-user counters --------------------------------------------------------

INOTIFY = (
    "import ctypes, os, sys, time\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "held = []\n"
    "while len(held) < 250:\n"
    "    fd = libc.inotify_init1(0)\n"
    "    if fd < 0:\n"
    "        break\n"
    "    held.append(fd)\n"
    "print(len(held), os.strerror(ctypes.get_errno()), flush=True)\n"
)


def inotify_holders(service: ServiceProcess) -> int:
    """How many inotify instances the service's sandboxes hold (seen from the host)."""
    found = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
            if Path(f"/proc/{pid}/cmdline").read_bytes().find(b"/.sandbox/") < 0:
                continue
        except OSError:
            continue
        found += sum(link == "anon_inode:inotify" for link in links)
    return found


def test_one_execution_cannot_use_up_another_executions_inotify_instances(
    service: ServiceProcess,
) -> None:
    """Every sandbox has a host uid of its own: the kernel's per-user limit on inotify
    instances (fs.inotify.max_user_instances, 128 here) is each execution's own."""
    if os.geteuid() != 0:
        pytest.skip("sandboxes have uids of their own only when the service runs as root")
    limit = int(Path("/proc/sys/fs/inotify/max_user_instances").read_text())
    greedy: dict[str, object] = {}

    def hog() -> None:
        greedy.update(service.execute(INOTIFY + "time.sleep(30)", timeoutMs=5_000))

    thread = threading.Thread(target=hog)
    thread.start()
    try:
        wait_for(lambda: inotify_holders(service) >= limit, what="the first execution's instances")
        other = service.execute(INOTIFY)
        assert other["exitCode"] == 0, other
        made = int(str(other["stdout"]).split()[0])
        assert made >= min(limit, 200), f"the second execution could make only {made}"
    finally:
        thread.join()
    assert str(greedy["stdout"]).split()[0] == str(limit), "the first reached the limit itself"
