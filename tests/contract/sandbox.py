"""The sandbox's promises, tried from inside: network, filesystem, identity, limits."""

from __future__ import annotations

import json
import os
import platform
import time
import uuid

import httpx
import pytest
from runner.policy import SANDBOX_ENV

from tests.contract.target import Api


def run_ok(api: Api, code: str) -> str:
    result = api.execute(code)
    assert result["exitCode"] == 0, result
    return str(result["stdout"])


def test_no_network_interfaces_but_loopback(api: Api) -> None:
    out = run_ok(api, "import socket; print(sorted(n for _, n in socket.if_nameindex()))")
    assert out == "['lo']\n"


def test_internet_is_denied_and_reported(api: Api) -> None:
    result = api.execute("import urllib.request\nurllib.request.urlopen('http://example.com')")
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


def test_raw_ip_connections_are_denied_and_reported(api: Api) -> None:
    result = api.execute("import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=2)")
    assert result["exitCode"] == 1
    assert "Network is unreachable" in result["stderr"]
    assert result["violations"][0]["target"] == "1.1.1.1:53"


def test_sandbox_may_use_its_own_private_loopback(api: Api) -> None:
    code = (
        "import socket\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
        "c = socket.create_connection(s.getsockname()); a, _ = s.accept()\n"
        "c.sendall(b'ping'); print(a.recv(4).decode())\n"
    )
    result = api.execute(code)
    assert result["stdout"] == "ping\n" and result["violations"] == []


def test_workspace_is_the_fresh_writable_cwd(api: Api) -> None:
    marker = uuid.uuid4().hex
    first = run_ok(
        api,
        f"import os\nopen('{marker}', 'w').write('x')\nprint(os.getcwd(), sorted(os.listdir('.')))",
    )
    assert first == f"/workspace ['.env', '{marker}', 'secrets']\n"
    # The next execution gets a new, empty workspace: nothing survives a run.
    assert run_ok(api, "import os; print(sorted(os.listdir('.')))") == "['.env', 'secrets']\n"


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
def test_env_file_and_secrets_dir_cannot_be_written(api: Api, code: str) -> None:
    result = api.execute(code)
    assert result["exitCode"] == 1
    assert result["stderr"].count("Error") >= 1


def test_protected_paths_write_is_reported(api: Api) -> None:
    result = api.execute("open('.env', 'w')")
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
def test_writes_outside_workspace_and_tmp_fail_and_are_reported(api: Api, path: str) -> None:
    result = api.execute(f"open({path!r}, 'w').write('x')")
    assert result["exitCode"] == 1
    assert any(v["target"] == path and v["kind"] == "filesystem" for v in result["violations"])
    assert "[sandbox] filesystem " + path in result["stderr"]


def test_reading_a_hidden_path_is_reported(api: Api) -> None:
    result = api.execute("print(open('/etc/shadow').read())")
    assert result["exitCode"] == 1
    assert result["violations"][0]["target"] == "/etc/shadow"
    assert "not visible" in result["violations"][0]["detail"]


def test_python_and_its_libraries_are_readable(api: Api) -> None:
    out = run_ok(api, "import json, ssl, sqlite3, decimal; print(json.dumps([1]))")
    assert out == "[1]\n"


def test_runs_as_unprivileged_user_without_capabilities(api: Api) -> None:
    out = run_ok(
        api,
        "import os\nprint(os.getuid(), os.getgid(), os.getgroups())\n"
        "print([l for l in open('/proc/self/status') if l.startswith('CapEff')])",
    )
    uid_line, caps = out.splitlines()
    assert uid_line == "1000 1000 [1000]" or uid_line == "1000 1000 []"
    assert "0000000000000000" in caps


def test_nested_user_namespaces_are_refused(api: Api) -> None:
    result = api.execute("import os; os.unshare(os.CLONE_NEWUSER)")
    assert result["exitCode"] == 1
    assert "Error" in result["stderr"]
    if platform.machine() != "x86_64":
        return  # the numbers below are x86_64's
    # clone() itself, as a fork into new namespaces: refused whatever the kernel (under
    # gVisor bubblewrap cannot disable them; the seccomp filter does, runner.seccomp).
    # A child that was made anyway exits at once, and the parent prints what it got.
    code = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "for name, flag in [('user', 0x10000000), ('net', 0x40000000), ('mount', 0x20000)]:\n"
        "    pid = libc.syscall(56, flag | 17, 0, 0, 0, 0)\n"
        "    if pid == 0:\n"
        "        os._exit(0)\n"
        "    print(name, pid, ctypes.get_errno())\n"
        "print('clone3', libc.syscall(435, 0, 0), ctypes.get_errno())\n"
    )
    assert run_ok(api, code).splitlines() == [
        "user -1 1",
        "net -1 1",
        "mount -1 1",
        "clone3 -1 38",
    ]


def test_environment_is_only_the_documented_set(api: Api) -> None:
    out = run_ok(api, "import os, json; print(json.dumps(dict(os.environ)))")
    env = json.loads(out)
    assert env == {**SANDBOX_ENV, "PWD": "/workspace"}


def test_service_token_is_not_reachable_through_proc(api: Api) -> None:
    code = (
        "import os\n"
        "found = []\n"
        "for pid in [p for p in os.listdir('/proc') if p.isdigit()]:\n"
        "    for name in ('environ', 'cmdline'):\n"
        "        try:\n"
        "            data = open(f'/proc/{pid}/{name}', 'rb').read()\n"
        "        except OSError:\n"
        "            continue\n"
        f"        if {api.token.encode()!r} in data or b'AUTH_TOKEN' in data:\n"
        "            found.append((pid, name))\n"
        "print(found)\n"
    )
    assert run_ok(api, code) == "[]\n"


def test_fresh_pid_namespace_shows_only_the_sandbox(api: Api) -> None:
    out = run_ok(
        api,
        "import os\npids = sorted(int(p) for p in os.listdir('/proc') "
        "if p.isdigit())\nprint(max(pids) < 10, os.getpid() < 10)",
    )
    assert out == "True True\n"
    service_pid = getattr(api, "proc", None)  # a local service: its own pid, seen from here
    if service_pid is not None:
        listed = run_ok(
            api, "import os; print(' '.join(p for p in os.listdir('/proc') if p.isdigit()))"
        )
        assert str(service_pid.pid) not in listed.split()


def test_runs_in_its_own_session(api: Api) -> None:
    # With --new-session the session leader is inside the sandbox, so its pid is visible.
    out = run_ok(api, "import os; print(os.path.exists(f'/proc/{os.getsid(0)}'))")
    assert out == "True\n"


def test_hostname_is_the_sandboxes_own(api: Api) -> None:
    assert run_ok(api, "import socket; print(socket.gethostname())") == "sandbox\n"
    assert os.uname().nodename != "sandbox"


def test_kernel_attack_surface_is_filtered(api: Api) -> None:
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
    out = run_ok(api, code).splitlines()
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
    if api.backend == "local":  # a pod's self-test cannot tell its filter from the pod's
        health = httpx.get(api.base_url + "/health").json()
        assert "seccomp filter on" in health["sandbox"]["detail"]


def test_concurrent_runs_cannot_see_each_other(api: Api) -> None:
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
        results = list(pool.map(lambda n: api.execute(code.format(me=n)), names))
    for name, result in zip(names, results, strict=True):
        assert result["exitCode"] == 0, result
        assert result["stdout"] == f"['mine-{name}', 'mine-{name}'] True\n"
        assert [f["name"] for f in result["files"]] == [f"mine-{name}"]


def test_timeout_kills_and_reports(api: Api) -> None:
    started = time.monotonic()
    result = api.execute("import time\nprint('started', flush=True)\ntime.sleep(60)", timeoutMs=500)
    assert time.monotonic() - started < 5
    assert result["timedOut"] is True
    assert result["exitCode"] is None
    assert result["stdout"] == "started\n"
    assert 450 <= result["durationMs"] < 3000  # timer granularity may fire a hair early
    assert result["violations"][-1]["target"] == "timeoutMs"
    assert "killed after 500 ms" in result["stderr"]


def test_busy_loop_is_killed_too(api: Api) -> None:
    result = api.execute("while True: pass", timeoutMs=300)
    assert result["timedOut"] is True and result["exitCode"] is None


def test_non_utf8_output_is_replaced(api: Api) -> None:
    result = api.execute(
        "import sys\nsys.stdout.buffer.write(b'ok \\xff\\xfe \\xe9')\n"
        "sys.stderr.buffer.write(b'\\x80')"
    )
    assert result["stdout"] == "ok \ufffd\ufffd \ufffd"
    assert result["stderr"] == "\ufffd"


def test_signals_are_reported(api: Api) -> None:
    result = api.execute("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    assert result["exitCode"] is None and result["signal"] == 11 and not result["timedOut"]


def test_the_code_cannot_kill_the_sandbox_supervisor(api: Api) -> None:
    # The stub is PID 1 of the sandbox's namespace: signals from inside cannot reach it.
    result = api.execute(
        "import os, signal, time\n"
        "print(os.getppid(), flush=True)\n"
        "os.kill(os.getppid(), signal.SIGKILL)\n"
        "time.sleep(0.2)\n"
        "print('still reported')"
    )
    if api.kernel == "gvisor":
        # gVisor delivers them (it lacks Linux's rule for a namespace's init): the code
        # can end its own execution early, no more, and the answer says so, with the
        # output so far (docs/kubernetes.md#gvisor).
        assert result["exitCode"] is None and result["stdout"] == "1\n"
        assert [(v["kind"], v["detail"]) for v in result["violations"]] == [
            ("other", "the sandbox's supervisor process ended without reporting")
        ]
        return
    assert result["exitCode"] == 0
    assert result["stdout"] == "1\nstill reported\n"
    assert result["violations"] == []


def test_the_code_cannot_stop_the_sandbox_supervisor(api: Api) -> None:
    result = api.execute(
        "import os, signal, time\n"
        "os.kill(os.getppid(), signal.SIGSTOP)\n"
        "time.sleep(0.2)\n"
        "print('still reported')",
        timeoutMs=3000,
    )
    if api.kernel == "gvisor":
        # The stub stops (gVisor delivers it): the runner still ends the sandbox at the
        # execution's timeout, and says so.
        assert result["timedOut"] is True and result["exitCode"] is None, result
        return
    assert result["exitCode"] == 0 and result["stdout"] == "still reported\n"
    assert result["violations"] == [] and not result["timedOut"]


# --- limits at the default settings: the same numbers in every placement -----------------


def test_one_process_cannot_take_more_than_its_memory_limit(api: Api) -> None:
    result = api.execute("x = bytearray(1536 * 1024 * 1024)")  # over MEMORY_LIMIT_MB (1024)
    assert result["exitCode"] == 1
    assert "MemoryError" in result["stderr"]
    ok = api.execute("x = bytearray(256 * 1024 * 1024); print(len(x))")
    assert ok["stdout"] == f"{256 * 1024 * 1024}\n"


def test_a_fork_bomb_stops_at_the_process_limit(api: Api) -> None:
    code = (
        "import os, time\n"
        "children = 0\n"
        "try:\n"
        "    for _ in range(200):\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(5); os._exit(0)\n"
        "        children += 1\n"
        "except OSError as e:\n"
        "    print('refused after', children, e.errno)\n"
    )
    result = api.execute(code, timeoutMs=20_000)
    (line,) = result["stdout"].splitlines()
    words = line.split()
    assert words[:2] == ["refused", "after"] and int(words[2]) < 64  # MAX_PROCESSES
    assert words[3] == "11"  # EAGAIN


def test_output_beyond_the_cap_is_discarded_and_flagged(api: Api) -> None:
    result = api.execute(
        "import sys; sys.stdout.write('x' * (3 << 20)); print('end', file=sys.stderr)"
    )
    assert len(result["stdout"]) == 1 << 20  # OUTPUT_LIMIT_BYTES
    assert result["truncated"] == {"stdout": True, "stderr": False}
    assert {"kind": "limit", "target": "stdout"} in [
        {"kind": v["kind"], "target": v["target"]} for v in result["violations"]
    ]
    assert result["stderr"].startswith("end\n")


def test_open_files_stop_at_their_limit(api: Api) -> None:
    code = (
        "files = []\n"
        "try:\n"
        "    while True:\n"
        "        files.append(open('/dev/null'))\n"
        "except OSError as e:\n"
        "    print(len(files) < 256, e.errno)\n"
    )
    assert run_ok(api, code) == "True 24\n"  # EMFILE below MAX_OPEN_FILES
