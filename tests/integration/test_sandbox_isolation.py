"""Attacks on the sandbox's isolation: each test tries to break one promise of the policy."""

from __future__ import annotations

import http.server
import os
import platform
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from runner.policy import SANDBOX_ENV

from tests.support import ROOT, ServiceProcess


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


def test_no_network_interfaces_but_loopback(service: ServiceProcess) -> None:
    out = run_ok(service, "import socket; print(sorted(n for _, n in socket.if_nameindex()))")
    assert out == "['lo']\n"


def test_host_loopback_services_are_unreachable(
    service: ServiceProcess, loopback_http_server: int
) -> None:
    result = service.execute(
        "import socket\n"
        f"socket.create_connection(('127.0.0.1', {loopback_http_server}), timeout=2)\n"
    )
    assert result["exitCode"] == 1
    assert "ConnectionRefusedError" in result["stderr"]


def test_internet_is_denied_and_reported(service: ServiceProcess) -> None:
    result = service.execute("import urllib.request\nurllib.request.urlopen('http://example.com')")
    assert result["exitCode"] == 1
    assert {"kind": "network", "target": "example.com:80"} in [
        {"kind": v["kind"], "target": v["target"]} for v in result["violations"]
    ]
    assert "--- sandbox: 1 event ---" in result["stderr"]
    assert (
        result["stderr"]
        .rstrip()
        .endswith(
            "[sandbox] network example.com:80: network denied: name resolution is not available "
            "in the sandbox"
        )
    )


def test_raw_ip_connections_are_denied_and_reported(service: ServiceProcess) -> None:
    result = service.execute("import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=2)")
    assert result["exitCode"] == 1
    assert "Network is unreachable" in result["stderr"]
    assert result["violations"][0]["target"] == "1.1.1.1:53"


def test_sandbox_may_use_its_own_private_loopback(service: ServiceProcess) -> None:
    code = (
        "import socket\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
        "c = socket.create_connection(s.getsockname()); a, _ = s.accept()\n"
        "c.sendall(b'ping'); print(a.recv(4).decode())\n"
    )
    result = service.execute(code)
    assert result["stdout"] == "ping\n" and result["violations"] == []


# --- filesystem ----------------------------------------------------------------------------


def test_workspace_is_the_fresh_writable_cwd(service: ServiceProcess) -> None:
    marker = uuid.uuid4().hex
    first = run_ok(
        service,
        f"import os\nopen('{marker}', 'w').write('x')\nprint(os.getcwd(), sorted(os.listdir('.')))",
    )
    assert first == f"/workspace ['.env', '{marker}', 'secrets']\n"
    # The next execution gets a new, empty workspace: nothing survives a run.
    assert run_ok(service, "import os; print(sorted(os.listdir('.')))") == "['.env', 'secrets']\n"


def test_private_tmp_is_writable_and_private(service: ServiceProcess) -> None:
    marker = f"sandbox-tmp-{uuid.uuid4().hex}"
    run_ok(service, f"open('/tmp/{marker}', 'w').write('x'); open('/dev/shm/{marker}', 'w')")
    assert not Path("/tmp", marker).exists()
    assert not Path("/dev/shm", marker).exists()
    assert run_ok(service, f"import os; print(os.path.exists('/tmp/{marker}'))") == "False\n"


@pytest.mark.parametrize(
    "code",
    [
        "open('.env', 'w').write('TOKEN=x')",
        "open('.env', 'a').write('TOKEN=x')",
        "import os; os.remove('.env')",
        "import os; os.rename('.env', 'other')",
        "open('secrets/key', 'w').write('x')",
        "import os; os.rmdir('secrets')",
        "import os; os.mkdir('secrets/sub')",
    ],
)
def test_env_file_and_secrets_dir_cannot_be_written(service: ServiceProcess, code: str) -> None:
    result = service.execute(code)
    assert result["exitCode"] == 1
    assert result["stderr"].count("Error") >= 1


def test_protected_paths_write_is_reported(service: ServiceProcess) -> None:
    result = service.execute("open('.env', 'w')")
    assert result["violations"][0] == {
        "kind": "filesystem",
        "target": "/workspace/.env",
        "detail": "write denied: .env and secrets/ are protected",
    }


@pytest.mark.parametrize(
    "path",
    [
        "/etc/evil",
        "/usr/evil",
        "/evil",
        "/.sandbox/stub.py",
        "/etc/passwd",
        "/proc/sys/kernel/hostname",
    ],
)
def test_writes_outside_workspace_and_tmp_fail_and_are_reported(
    service: ServiceProcess, path: str
) -> None:
    result = service.execute(f"open({path!r}, 'w').write('x')")
    assert result["exitCode"] == 1
    assert any(v["target"] == path and v["kind"] == "filesystem" for v in result["violations"])
    assert "[sandbox] filesystem " + path in result["stderr"]


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


def test_reading_a_hidden_path_is_reported(service: ServiceProcess) -> None:
    result = service.execute("print(open('/etc/shadow').read())")
    assert result["exitCode"] == 1
    assert result["violations"][0]["target"] == "/etc/shadow"
    assert "not visible" in result["violations"][0]["detail"]


def test_python_and_its_libraries_are_readable(service: ServiceProcess) -> None:
    out = run_ok(service, "import json, ssl, sqlite3, decimal; print(json.dumps([1]))")
    assert out == "[1]\n"


def test_runs_as_unprivileged_user_without_capabilities(service: ServiceProcess) -> None:
    out = run_ok(
        service,
        "import os\nprint(os.getuid(), os.getgid(), os.getgroups())\n"
        "print([l for l in open('/proc/self/status') if l.startswith('CapEff')])",
    )
    uid_line, caps = out.splitlines()
    assert uid_line == "1000 1000 [1000]" or uid_line == "1000 1000 []"
    assert "0000000000000000" in caps


def test_nested_user_namespaces_are_refused(service: ServiceProcess) -> None:
    result = service.execute("import os; os.unshare(os.CLONE_NEWUSER)")
    assert result["exitCode"] == 1
    assert "Error" in result["stderr"]


# --- environment and processes -------------------------------------------------------------


def test_environment_is_only_the_documented_set(service: ServiceProcess) -> None:
    out = run_ok(service, "import os, json; print(json.dumps(dict(os.environ)))")
    import json

    env = json.loads(out)
    assert env == {**SANDBOX_ENV, "PWD": "/workspace"}


def test_service_token_is_not_reachable_through_proc(service: ServiceProcess) -> None:
    code = (
        "import os\n"
        "found = []\n"
        "for pid in [p for p in os.listdir('/proc') if p.isdigit()]:\n"
        "    for name in ('environ', 'cmdline'):\n"
        "        try:\n"
        "            data = open(f'/proc/{pid}/{name}', 'rb').read()\n"
        "        except OSError:\n"
        "            continue\n"
        f"        if {service.token.encode()!r} in data or b'AUTH_TOKEN' in data:\n"
        "            found.append((pid, name))\n"
        "print(found)\n"
    )
    assert run_ok(service, code) == "[]\n"


def test_fresh_pid_namespace_shows_only_the_sandbox(service: ServiceProcess) -> None:
    out = run_ok(
        service,
        "import os\npids = sorted(int(p) for p in os.listdir('/proc') "
        "if p.isdigit())\nprint(max(pids) < 10, os.getpid() < 10)",
    )
    assert out == "True True\n"
    assert (
        str(service.proc.pid)
        not in run_ok(
            service, "import os; print(' '.join(p for p in os.listdir('/proc') if p.isdigit()))"
        ).split()
    )


def test_runs_in_its_own_session(service: ServiceProcess) -> None:
    # With --new-session the session leader is inside the sandbox, so its pid is visible.
    out = run_ok(service, "import os; print(os.path.exists(f'/proc/{os.getsid(0)}'))")
    assert out == "True\n"


def test_service_environment_variables_do_not_leak(service: ServiceProcess) -> None:
    assert "AUTH_TOKEN" in service.env
    out = run_ok(service, "import os; print('AUTH_TOKEN' in os.environ, 'STATE_DIR' in os.environ)")
    assert out == "False False\n"


def test_hostname_is_the_sandboxes_own(service: ServiceProcess) -> None:
    assert run_ok(service, "import socket; print(socket.gethostname())") == "sandbox\n"
    assert os.uname().nodename != "sandbox"


def test_no_new_privileges_and_dies_with_the_service() -> None:
    # A service of its own, killed with SIGKILL: its warm sandboxes must not outlive it.
    svc = ServiceProcess()
    try:
        assert "NoNewPrivs:\t1" in run_ok(svc, "print(open('/proc/self/status').read())")
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
        sandboxes = [p for p in pids if _parent_is(p, svc.proc.pid)]
        assert sandboxes, "the service has no warm sandboxes to check"
        svc.proc.kill()
        svc.proc.wait()
        deadline = time.monotonic() + 5
        while any(os.path.exists(f"/proc/{p}") for p in sandboxes):
            assert time.monotonic() < deadline, "sandboxes outlived the service"
            time.sleep(0.02)
    finally:
        svc.stop()


def _parent_is(pid: str, parent: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return int(stat.rsplit(")", 1)[1].split()[1]) == parent


def test_kernel_attack_surface_is_filtered(service: ServiceProcess) -> None:
    if platform.machine() != "x86_64":
        pytest.skip("the syscall numbers below are x86_64's")
    code = (
        "import ctypes\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "def call(nr, *args):\n"
        "    return libc.syscall(nr, *args), ctypes.get_errno()\n"
        "for name, nr in [('ptrace', 101), ('keyctl', 250), ('io_uring_setup', 425),\n"
        "                 ('bpf', 321), ('userfaultfd', 323), ('perf_event_open', 298),\n"
        "                 ('unshare', 272), ('mount', 165)]:\n"
        "    print(name, call(nr, 0, 0, 0, 0, 0))\n"
        "import threading, subprocess\n"
        "t = threading.Thread(target=print, args=('thread ok',)); t.start(); t.join()\n"
        "print(subprocess.run(['echo', 'process ok'], capture_output=True, text=True).stdout)\n"
    )
    out = run_ok(service, code).splitlines()
    assert out[:8] == [
        f"{name} (-1, 1)"
        for name in (
            "ptrace",
            "keyctl",
            "io_uring_setup",
            "bpf",
            "userfaultfd",
            "perf_event_open",
            "unshare",
            "mount",
        )
    ]
    assert out[8:] == ["thread ok", "process ok", ""]
    health = httpx.get(service.base_url + "/health").json()
    assert "seccomp filter on" in health["sandbox"]["detail"]


def test_concurrent_runs_cannot_see_each_other(service: ServiceProcess) -> None:
    # Each run leaves a marker in its workspace and /tmp and looks for everyone else's
    # while the others are still running (each waits half a second before looking).
    from concurrent.futures import ThreadPoolExecutor

    code = (
        "import os, time, glob\n"
        "me = {me!r}\n"
        "open('mine-' + me, 'w').write(me); open('/tmp/mine-' + me, 'w').write(me)\n"
        "time.sleep(0.5)\n"
        "seen = glob.glob('/workspace/mine-*') + glob.glob('/tmp/mine-*')\n"
        "procs = [p for p in os.listdir('/proc') if p.isdigit()]\n"
        "print(sorted(os.path.basename(s) for s in seen), len(procs) < 6)\n"
    )
    names = [f"run{i}" for i in range(8)]
    with ThreadPoolExecutor(len(names)) as pool:
        results = list(pool.map(lambda n: service.execute(code.format(me=n)), names))
    for name, result in zip(names, results, strict=True):
        assert result["exitCode"] == 0, result
        assert result["stdout"] == f"['mine-{name}', 'mine-{name}'] True\n"
        assert [f["name"] for f in result["files"]] == [f"mine-{name}"]


def test_as_root_sandboxes_run_as_the_unprivileged_host_uid(service: ServiceProcess) -> None:
    if os.geteuid() != 0:
        pytest.skip("the service drops to SANDBOX_UID only when it runs as root")
    sandboxes = [p for p in os.listdir("/proc") if p.isdigit() and _parent_is(p, service.proc.pid)]
    assert sandboxes, "the service has no warm sandboxes to check"
    for pid in sandboxes:
        status = Path(f"/proc/{pid}/status").read_text()
        uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
        groups = next(line for line in status.splitlines() if line.startswith("Groups:"))
        assert uids == ["64000"] * 4, status
        assert groups.split()[1:] == ["64000"]
