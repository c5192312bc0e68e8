"""Whole-execution limits in local mode: a cgroup per sandbox, tried as an attacker would.

On this host (cgroup v1: memory, pids, cpu) in the integration tier, and on cgroup v2 in
the Debian 13 virtual machine of `make test-v2` (tests/vm), where every test marked
``cgroups`` runs again.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from runner.cgroup import Placement, host_placement

from controller.cgroups import subtree_name
from tests.browser_support import agent_pids, settled
from tests.integration.test_browser_lifecycle import is_chromium
from tests.integration.test_sandbox_limits import host_processes_matching, wait_until_gone
from tests.support import ServiceProcess, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.cgroups]

CAP_MB = 192


def placement() -> Placement:
    where = host_placement()
    assert not isinstance(where, str), where
    return where


def subtree(state_dir: str, controller: str | None = None) -> list[Path]:
    """Where the service with this state directory may have its sandboxes' cgroups: beside
    this process's cgroup, or (v2) beside one of its ancestors, since a v2 service first
    moves every process of its cgroup (this test's too) into a leaf below it."""
    name = subtree_name(state_dir)
    return [
        ancestor / name
        for c, parent in placement().parents.items()
        if controller is None or c == controller
        for ancestor in (parent, *parent.parents)
        if ancestor.is_relative_to("/sys/fs/cgroup")
    ]


def groups(state_dir: str) -> set[str]:
    """The sandbox cgroups of the service with this state directory, by name."""
    names: set[str] = set()
    for root in subtree(state_dir):
        if root.is_dir():
            names |= {p.name for p in root.iterdir() if p.is_dir()}
    return names


@pytest.fixture(scope="module")
def capped() -> Iterator[ServiceProcess]:
    with ServiceProcess(
        memory_limit_mb=str(CAP_MB),
        max_processes="24",
        workspace_size_mb="512",
        tmp_size_mb="512",
        warm_sandboxes="1",
        sandbox_cgroups="required",
    ) as svc:
        yield svc


def test_health_says_how_whole_executions_are_bounded(capped: ServiceProcess) -> None:
    sandbox = capped.client.get("/health").json()["sandbox"]
    assert sandbox["ok"] is True
    assert sandbox["limits"].startswith(f"cgroup v{placement().version} per execution")
    assert subtree_name(capped.state_dir) in sandbox["limits"]


def test_children_that_each_stay_under_the_process_limit_are_capped_together(
    capped: ServiceProcess,
) -> None:
    # The held-out attack: eight children, each allocating up to its own address-space
    # limit (which alone would allow 8 x CAP_MB), touching every page.
    code = (
        "import os, time\n"
        "for _ in range(8):\n"
        "    if os.fork() == 0:\n"
        "        held = []\n"
        "        try:\n"
        f"            for _ in range({CAP_MB // 16}):\n"
        "                held.append(bytearray(16 << 20))\n"
        "        except MemoryError:\n"
        "            pass\n"
        "        time.sleep(30)\n"
        "        os._exit(0)\n"
        "for _ in range(8):\n"
        "    os.wait()\n"
    )
    result = capped.execute(code, timeoutMs=15000)
    memory = [v for v in result["violations"] if v["target"] == "memory"]
    assert memory and memory[0]["kind"] == "limit", result
    assert "MEMORY_LIMIT_MB" in memory[0]["detail"]
    assert "peak" in memory[0]["detail"]
    assert result["usage"]["peakMemoryKb"] <= CAP_MB * 1024
    assert "[sandbox] limit memory" in result["stderr"]


def test_tmpfs_pages_count_against_the_execution(capped: ServiceProcess) -> None:
    # /tmp alone would take 512 MiB (in files under the 64 MiB file-size limit): the
    # execution's memory is what stops it.
    code = (
        "block = b'x' * (1 << 20)\n"
        "for n in range(12):\n"
        "    with open(f'/tmp/fill{n}', 'wb') as f:\n"
        "        for _ in range(32):\n"
        "            f.write(block)\n"
        "print('wrote all')\n"
    )
    result = capped.execute(code, timeoutMs=15000)
    assert "wrote all" not in result["stdout"]
    assert result["usage"]["peakMemoryKb"] <= CAP_MB * 1024
    assert {"kind": "limit", "target": "memory"} in [
        {"kind": v["kind"], "target": v["target"]} for v in result["violations"]
    ]


def test_socket_buffers_cannot_hold_memory_beyond_the_execution(capped: ServiceProcess) -> None:
    # Found by review: v1 leaves TCP buffers outside memory.limit_in_bytes; a hundred
    # loopback pairs with full send buffers queued about 1 GiB in a 192 MiB execution.
    code = (
        "import socket\n"
        "srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen(200)\n"
        "pairs, total = [], 0\n"
        "for _ in range(100):\n"
        "    c = socket.create_connection(srv.getsockname()); s, _ = srv.accept()\n"
        "    c.setblocking(False); pairs.append((c, s))\n"
        "    while True:\n"
        "        try:\n"
        "            total += c.send(b'x' * 65536)\n"
        "        except OSError:\n"
        "            break\n"
        "print(total >> 20)\n"
    )
    result = capped.execute(code, timeoutMs=20000)
    if placement().version == 1:  # the execution's own TCP limit refuses more buffers
        assert result["exitCode"] == 0, result
        assert int(result["stdout"]) <= min(CAP_MB // 4, 64) + 8
    elif result["exitCode"] != 0:  # v2 charges them to the execution: its limit ends it
        memory = {"kind": "limit", "target": "memory"}
        assert memory in [{"kind": v["kind"], "target": v["target"]} for v in result["violations"]]
        # (socket buffers are charged past the limit by a little before the kernel acts)
        assert result["usage"]["peakMemoryKb"] <= (CAP_MB + 8) * 1024
    else:  # ... or the kernel refused them first
        assert int(result["stdout"]) <= CAP_MB + 8


def test_processes_are_counted_for_the_whole_execution(capped: ServiceProcess) -> None:
    # Children that each start one more: a tree, not one parent's children.
    code = (
        "import os, time\n"
        "started = 0\n"
        "try:\n"
        "    for _ in range(200):\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(20)\n"
        "            os._exit(0)\n"
        "        started += 1\n"
        "except BlockingIOError:\n"
        "    print('refused after', started)\n"
    )
    result = capped.execute(code, timeoutMs=10000)
    assert result["stdout"].startswith("refused after "), result
    assert int(result["stdout"].split()[-1]) < 24
    assert {"kind": "limit", "target": "processes"} in [
        {"kind": v["kind"], "target": v["target"]} for v in result["violations"]
    ]


def test_a_plain_run_reports_its_whole_peak_and_no_violation(capped: ServiceProcess) -> None:
    result = capped.execute("x = bytearray(48 << 20); print(len(x))")
    assert result["stdout"] == f"{48 << 20}\n"
    assert result["violations"] == []
    assert 48 * 1024 < result["usage"]["peakMemoryKb"] <= CAP_MB * 1024


def test_no_cgroup_outlives_its_sandbox(capped: ServiceProcess) -> None:
    for _ in range(3):
        capped.execute("print(1)")
    # What remains is the warm pool's (one sandbox), each with its cgroup.
    wait_for(lambda: len(groups(capped.state_dir)) == 1)


def context_call(svc: ServiceProcess, context_id: str, code: str) -> dict[str, Any]:
    response = svc.client.post(
        f"/contexts/{context_id}/execute", json={"code": code, "timeoutMs": 15000}
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_a_contexts_memory_counts_what_earlier_calls_left_running(
    capped: ServiceProcess,
) -> None:
    """A process started by one call, holding memory between calls, counts with the next
    call's: the cgroup is the context's, for its whole life."""
    context_id = capped.client.post("/contexts", json={}).json()["contextId"]
    try:
        held = CAP_MB * 5 // 8
        started = context_call(
            capped,
            context_id,
            "import subprocess, sys\n"
            "holder = subprocess.Popen([sys.executable, '-c', "
            f"'import time; x = bytearray({held} << 20); print(1, flush=True); time.sleep(60)'],"
            " stdout=subprocess.PIPE)\n"
            "print(holder.stdout.readline().decode().strip())",
        )
        assert started["stdout"] == "1\n", started
        over = context_call(capped, context_id, f"more = bytearray({held} << 20)")
        memory = [v for v in over["violations"] if v["target"] == "memory"]
        assert memory, over
        assert context_call(capped, context_id, "print('alive')")["stdout"] == "alive\n"
    finally:
        capped.client.delete(f"/contexts/{context_id}")


def test_a_contexts_processes_are_counted_across_calls(capped: ServiceProcess) -> None:
    context_id = capped.client.post("/contexts", json={}).json()["contextId"]
    try:
        first = context_call(
            capped,
            context_id,
            "import subprocess\nkept = [subprocess.Popen(['sleep', '60']) for _ in range(12)]",
        )
        assert first["exitCode"] == 0, first
        second = context_call(
            capped,
            context_id,
            "import os, time\nstarted = 0\ntry:\n    for _ in range(40):\n"
            "        if os.fork() == 0:\n            time.sleep(20)\n            os._exit(0)\n"
            "        started += 1\nexcept BlockingIOError:\n    print('refused after', started)",
        )
        assert second["stdout"].startswith("refused after "), second
        assert int(second["stdout"].split()[-1]) < 24 - 12
        assert {"kind": "limit", "target": "processes"} in [
            {"kind": v["kind"], "target": v["target"]} for v in second["violations"]
        ]
    finally:
        capped.client.delete(f"/contexts/{context_id}")
    # Its cgroup goes with it: what remains is the warm pool's.
    wait_for(lambda: len(groups(capped.state_dir)) == 1)


def cpu_groups(state_dir: str) -> dict[str, Path]:
    """The sandbox cgroups' directories in the cpu hierarchy, by name."""
    roots = subtree(state_dir, "cpu" if placement().version == 1 else "")
    root = next((r for r in roots if r.is_dir()), roots[0])
    return {group.name: group for group in root.iterdir() if group.is_dir()}


def cpu_class(group: Path) -> tuple[str, set[str]]:
    """A cgroup's CPU class (``cpu.idle`` and its weight, as in runner.cgroup) and the
    names of the processes in it."""
    names = set()
    for pid in (group / "cgroup.procs").read_text().split():
        with contextlib.suppress(OSError):  # gone meanwhile
            names.add(Path(f"/proc/{pid}/comm").read_text().strip())
    weight = group / ("cpu.shares" if (group / "cpu.shares").exists() else "cpu.weight")
    idle, weight_value = (group / "cpu.idle").read_text().strip(), weight.read_text().strip()
    if idle == "1":
        return "idle", names
    return ("normal" if weight_value in ("1024", "100") else "warming"), names


def test_a_run_past_its_first_moments_gives_way_to_fresh_ones() -> None:
    where = placement()
    cpu = where.parents.get("cpu" if where.version == 1 else "")
    if cpu is None or not (cpu / "cpu.idle").exists():
        pytest.skip("no cpu.idle here (Linux before 5.15, or no cpu controller)")
    # Two seconds in the normal class: long enough to see from here.
    with ServiceProcess(
        warm_sandboxes="1", sandbox_cgroups="required", cpu_idle_after_ms="2000"
    ) as svc:

        def the_warm_one() -> Path | None:
            found = list(cpu_groups(svc.state_dir).values())
            return found[0] if len(found) == 1 else None  # the self-test's may still be there

        group = wait_for(the_warm_one, what="the warm sandbox alone")
        # Warming up (and waiting) in the warming class: what runs comes first.
        wait_for(lambda: cpu_class(group)[0] == "warming", what="the warm-up's class")
        with ThreadPoolExecutor(1) as pool:
            run = pool.submit(svc.execute, "import subprocess; subprocess.run(['sleep', '4'])")

            def under_way() -> str | None:
                idle, processes = cpu_class(group)
                return idle if "sleep" in processes else None

            # The run under way (its sleep is in the cgroup): the normal class ...
            assert wait_for(under_way, what="the run's sleep") == "normal"
            # ... and CPU_IDLE_AFTER_MS into it, the idle class.
            wait_for(lambda: cpu_class(group)[0] == "idle", state=lambda: cpu_class(group))
            assert run.result(timeout=15)["exitCode"] == 0


def test_the_subtree_is_gone_after_a_stop_and_after_a_kill() -> None:
    svc = ServiceProcess(warm_sandboxes="2", sandbox_cgroups="required")
    state_dir = svc.state_dir
    try:
        wait_for(lambda: len(groups(state_dir)) == 2)
        # SIGKILL in the middle of a run: the sandboxes die with the service
        # (--die-with-parent), and its janitor removes what is left of the subtree.
        marker = str(800_000 + os.getpid() % 99_999)
        code = f"import subprocess; subprocess.run(['sleep', '{marker}'])"
        runner = subprocess.Popen(
            [
                "curl", "-s", "-o", "/dev/null", "-H", f"Authorization: Bearer {svc.token}",
                "-H", "Content-Type: application/json",
                "-d", json.dumps({"code": code, "timeoutMs": 30000}),
                f"{svc.base_url}/execute",
            ]
        )  # fmt: skip
        wait_for(lambda: bool(host_processes_matching(f"sleep {marker}")))
        os.kill(svc.proc.pid, signal.SIGKILL)
        svc.proc.wait(10)
        runner.wait(10)
        wait_for(lambda: not any(root.exists() for root in subtree(state_dir)))
        assert wait_until_gone(f"sleep {marker}") == []
        # The next start with the same state directory is healthy.
        again = ServiceProcess(state_dir=state_dir, warm_sandboxes="1", sandbox_cgroups="required")
        try:
            wait_for(lambda: len(groups(state_dir)) == 1)
            assert again.execute("print(2+2)")["stdout"] == "4\n"
        finally:
            again.stop()
    finally:
        svc.stop()
    assert not any(root.exists() for root in subtree(state_dir))


def _procs(state_dir: str, name: str) -> list[str]:
    found: list[str] = []
    for root in subtree(state_dir):
        with contextlib.suppress(OSError):
            found += (root / name / "cgroup.procs").read_text().split()
    return found


@pytest.mark.chromium
def test_each_browser_agent_is_bounded_by_a_cgroup_of_its_own() -> None:
    svc = ServiceProcess(browser_warm_agents="1", browser_memory_mb="512")
    try:
        created = svc.client.post("/browser/sessions")
        assert created.status_code == 201, created.text
        settled(svc, warm=1)  # the replacement agent made whole, its cgroup's limit written
        subtree = subtree_name(svc.state_dir, "-browsers")
        memory_root = placement().parents["" if placement().version == 2 else "memory"] / subtree
        browsers = [pid for pid in agent_pids(svc.state_dir) if is_chromium(pid)]
        assert browsers
        for pid in browsers:
            assert f"/{subtree}/br-" in Path(f"/proc/{pid}/cgroup").read_text()
        groups_now = sorted(p for p in memory_root.iterdir() if p.is_dir())
        assert len(groups_now) == 2  # the session's agent and the warm one
        limit = "memory.max" if placement().version == 2 else "memory.limit_in_bytes"
        assert {(g / limit).read_text().strip() for g in groups_now} == {str(512 << 20)}
        deleted = svc.client.delete(f"/browser/sessions/{created.json()['sessionId']}")
        assert deleted.status_code == 204
        wait_for(lambda: len([p for p in memory_root.iterdir() if p.is_dir()]) == 1)
    finally:
        svc.stop()
    assert not memory_root.exists()
