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

from tests.support import ROOT, ServiceProcess, parent_pid


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


def test_as_root_sandboxes_run_as_the_unprivileged_host_uid(service: ServiceProcess) -> None:
    if os.geteuid() != 0:
        pytest.skip("the service drops to SANDBOX_UID only when it runs as root")
    sandboxes = [
        p
        for p in os.listdir("/proc")
        if p.isdigit() and _parent_is(p, service.proc.pid) and _is_bwrap(p)
    ]
    assert sandboxes, "the service has no warm sandboxes to check"
    for pid in sandboxes:
        status = Path(f"/proc/{pid}/status").read_text()
        uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
        groups = next(line for line in status.splitlines() if line.startswith("Groups:"))
        assert uids == ["64000"] * 4, status
        assert groups.split()[1:] == ["64000"]
