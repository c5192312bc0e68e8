"""Limits: time, memory, processes, files, output; and nothing survives an execution."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.support import ServiceProcess


def host_processes_matching(marker: str) -> list[str]:
    listing = subprocess.run(
        ["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True
    ).stdout
    return [line for line in listing.splitlines() if marker in line]


def wait_until_gone(marker: str, timeout_s: float = 5.0) -> list[str]:
    """Poll the host's process table; return what still matches after the deadline."""
    deadline = time.monotonic() + timeout_s
    while (left := host_processes_matching(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@pytest.fixture(scope="module")
def limited() -> Iterator[ServiceProcess]:
    with ServiceProcess(
        memory_limit_mb="256",
        max_processes="16",
        max_file_size_mb="2",
        max_open_files="64",
        output_limit_bytes="4096",
        workspace_size_mb="8",
        tmp_size_mb="4",
    ) as svc:
        yield svc


def test_timeout_kills_the_whole_process_tree(service: ServiceProcess) -> None:
    marker = str(900_000 + uuid.uuid4().int % 99_999)
    code = (
        "import os, subprocess, time\n"
        f"subprocess.Popen(['sleep', '{marker}'])\n"
        f"subprocess.Popen(['sleep', '{marker}'], start_new_session=True)\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        f"    os.execvp('sleep', ['sleep', '{marker}'])\n"
        "time.sleep(60)\n"
    )
    result = service.execute(code, timeoutMs=1000)
    assert result["timedOut"] is True
    assert wait_until_gone(f"sleep {marker}") == []


def test_daemons_do_not_survive_a_finished_run(service: ServiceProcess) -> None:
    marker = str(800_000 + uuid.uuid4().int % 99_999)
    code = (
        "import os\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        f"        os.execvp('sleep', ['sleep', '{marker}'])\n"
        "    os._exit(0)\n"
        "print('parent done')\n"
    )
    result = service.execute(code)
    assert result["exitCode"] == 0 and result["timedOut"] is False
    assert wait_until_gone(f"sleep {marker}") == []


def test_memory_limit(limited: ServiceProcess) -> None:
    result = limited.execute("x = bytearray(512 * 1024 * 1024)")
    assert result["exitCode"] == 1
    assert "MemoryError" in result["stderr"]
    ok = limited.execute("x = bytearray(64 * 1024 * 1024); print(len(x))")
    assert ok["stdout"] == f"{64 * 1024 * 1024}\n"
    assert ok["usage"]["peakMemoryKb"] > 64 * 1024


def test_process_limit_stops_a_fork_bomb(limited: ServiceProcess) -> None:
    code = (
        "import os\n"
        "children = 0\n"
        "try:\n"
        "    for _ in range(200):\n"
        "        if os.fork() == 0:\n"
        "            import time; time.sleep(30); os._exit(0)\n"
        "        children += 1\n"
        "except BlockingIOError as exc:\n"
        "    print('refused after', children)\n"
    )
    result = limited.execute(code, timeoutMs=5000)
    assert result["stdout"].startswith("refused after ")
    assert int(result["stdout"].split()[-1]) < 16


def test_file_size_limit(limited: ServiceProcess) -> None:
    # Python ignores SIGXFSZ, so the write fails with EFBIG instead of killing the process.
    result = limited.execute("open('big', 'wb').write(b'x' * (3 * 1024 * 1024))")
    assert result["exitCode"] == 1
    assert "File too large" in result["stderr"]
    small = limited.execute("open('ok', 'wb').write(b'x' * (1024 * 1024)); print('ok')")
    assert small["stdout"] == "ok\n"


def test_file_size_signal_is_reported_for_programs_that_do_not_ignore_it(
    limited: ServiceProcess,
) -> None:
    result = limited.execute(
        "import subprocess\nsubprocess.run(['dd', 'if=/dev/zero', "
        "'of=big', 'bs=1M', 'count=3'], check=True)"
    )
    assert result["exitCode"] == 1
    assert "died with <Signals.SIGXFSZ" in result["stderr"]


def test_open_files_limit(limited: ServiceProcess) -> None:
    code = (
        "fs = []\ntry:\n    while True: fs.append(open('/dev/null'))\nexcept OSError as e:\n"
        "    print(e.errno, len(fs) < 64)"
    )
    assert limited.execute(code)["stdout"] == "24 True\n"  # EMFILE


def test_workspace_and_tmp_sizes_are_limited(limited: ServiceProcess) -> None:
    code = (
        "import errno\n"
        "def fill(d):\n"
        "    try:\n"
        "        for i in range(100):\n"
        "            open(f'{d}/f{i}', 'wb').write(b'x' * 1024 * 1024)\n"
        "    except OSError as e:\n"
        "        return e.errno == errno.ENOSPC, i\n"
        "print(fill('/workspace'), fill('/tmp'))\n"
    )
    # /tmp also holds the seeded caches (a few KiB), so one MiB file fewer may fit there.
    assert limited.execute(code)["stdout"] in ("(True, 8) (True, 4)\n", "(True, 8) (True, 3)\n")


def test_output_is_capped_and_flagged(limited: ServiceProcess) -> None:
    result = limited.execute(
        "import sys\nsys.stdout.write('a' * 100_000)\nsys.stderr.write('b' * 5000)"
    )
    assert result["exitCode"] == 0
    assert result["stdout"] == "a" * 4096
    assert result["truncated"] == {"stdout": True, "stderr": True}
    assert result["stderr"].startswith("b" * 4096)
    assert "OUTPUT_LIMIT_BYTES" in result["stderr"]


def test_flooding_output_does_not_stall_the_run(limited: ServiceProcess) -> None:
    result = limited.execute(
        "import sys\nfor _ in range(2000): sys.stdout.write('x' * 10_000)\n"
        "print('end', file=sys.stderr)",
        timeoutMs=20_000,
    )
    assert result["exitCode"] == 0 and result["timedOut"] is False
    assert result["stderr"].startswith("end\n")


def _children(pid: int) -> set[str]:
    path = f"/proc/{pid}/task/{pid}/children"
    with open(path) as listing:
        return set(listing.read().split())


def test_warm_sandboxes_have_a_deadline() -> None:
    svc = ServiceProcess(warm_sandbox_max_age_s="1")
    try:
        first = _children(svc.proc.pid)
        assert first, "no warm sandboxes"
        deadline = time.monotonic() + 10
        while _children(svc.proc.pid) & first:
            assert time.monotonic() < deadline, "old warm sandboxes were never replaced"
            time.sleep(0.05)
        assert svc.execute("print('fresh')")["stdout"] == "fresh\n"
    finally:
        svc.stop()
