"""The cgroup interface as data: where the subtree goes, what each limit writes, and the
v2 half against its file interface (this machine runs v1 for real: tests/integration)."""

from __future__ import annotations

import functools
import itertools
from pathlib import Path

import pytest
from runner.cgroup import (
    ENTER,
    SANDBOX_TASKS,
    CpuClass,
    GroupLimits,
    IdleClass,
    Placement,
    SandboxCgroup,
    SandboxCgroups,
    class_writes,
    enter_argv,
    limit_writes,
    parse_mounts,
    parse_own,
    placement,
)

from controller.cgroups import subtree_name
from controller.execution.limits import group_limits
from controller.settings import Settings

pytestmark = pytest.mark.unit

MIB = 1 << 20

V1_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
V1_OWN = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/abc\n1:cpu:/\n0::/\n"
V2_MOUNTINFO = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
V2_OWN = "0::/system.slice/sandbox-controller.service\n"


def test_mounts_and_own_cgroups_are_read_from_proc() -> None:
    v1, v2 = parse_mounts(V1_MOUNTINFO)
    assert v1 == {
        "cpu": (Path("/sys/fs/cgroup/cpu"), "/"),
        "memory": (Path("/sys/fs/cgroup/memory"), "/"),
        "pids": (Path("/sys/fs/cgroup/pids"), "/"),
    }
    assert v2 == (Path("/sys/fs/cgroup/unified"), "/")
    own_v1, own_v2 = parse_own(V1_OWN)
    assert own_v1["memory"] == "/process_api/abc"
    assert own_v1["pids"] == "/"
    assert own_v2 == "/"


def test_v2_is_chosen_only_when_it_has_the_controllers() -> None:
    # This machine: an empty v2 mount beside v1's memory and pids.
    chosen = placement(parse_mounts(V1_MOUNTINFO), parse_own(V1_OWN), set())
    assert chosen == Placement(
        1,
        {
            "memory": Path("/sys/fs/cgroup/memory/process_api/abc"),
            "pids": Path("/sys/fs/cgroup/pids"),
            "cpu": Path("/sys/fs/cgroup/cpu"),
        },
    )
    # A current Debian or Ubuntu host: the unified hierarchy, under the unit's cgroup.
    chosen = placement(
        parse_mounts(V2_MOUNTINFO), parse_own(V2_OWN), {"cpu", "memory", "pids", "io"}
    )
    assert chosen == Placement(
        2, {"": Path("/sys/fs/cgroup/system.slice/sandbox-controller.service")}
    )


def test_a_mount_of_a_subtree_is_read_relative_to_its_root() -> None:
    # A container on a v1 host: its cgroup is mounted as the hierarchy's root, and
    # /proc/self/cgroup names it from the host's root.
    mountinfo = (
        "35 31 0:32 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        "39 31 0:36 /docker/abc /sys/fs/cgroup/my\\040pids rw - cgroup cgroup rw,pids\n"
    )
    own = "8:pids:/docker/abc\n4:memory:/docker/abc/inner\n"
    assert placement(parse_mounts(mountinfo), parse_own(own), set()) == Placement(
        1,
        {
            "memory": Path("/sys/fs/cgroup/memory/inner"),
            "pids": Path("/sys/fs/cgroup/my pids"),
        },
    )
    elsewhere = "8:pids:/other\n4:memory:/docker/abc\n"
    assert isinstance(placement(parse_mounts(mountinfo), parse_own(elsewhere), set()), str)


def test_no_usable_hierarchy_is_a_reason_not_a_crash() -> None:
    reason = placement(parse_mounts(V2_MOUNTINFO), parse_own(V2_OWN), {"cpu"})
    assert isinstance(reason, str)
    assert "memory" in reason and "pids" in reason


def test_limit_writes_v1_put_memory_before_memory_and_swap() -> None:
    writes = limit_writes(1, GroupLimits(256 * MIB, 67, 1.5), swap=True, tcp=True)
    assert writes == [
        ("memory", "memory.limit_in_bytes", str(256 * MIB)),
        ("memory", "memory.memsw.limit_in_bytes", str(256 * MIB)),
        ("memory", "memory.swappiness", "0"),
        ("memory", "memory.kmem.tcp.limit_in_bytes", str(64 * MIB)),
        ("pids", "pids.max", "67"),
        ("cpu", "cpu.cfs_period_us", "100000"),
        ("cpu", "cpu.cfs_quota_us", "150000"),
    ]


def test_limit_writes_v2_deny_swap_and_set_a_quota() -> None:
    small = limit_writes(1, GroupLimits(64 * MIB, 10, None), swap=False, tcp=True)
    assert ("memory", "memory.kmem.tcp.limit_in_bytes", str(16 * MIB)) in small
    assert limit_writes(2, GroupLimits(64 * MIB, 10, None), swap=False) == [
        ("", "memory.max", str(64 * MIB)),
        ("", "pids.max", "10"),
    ]
    assert limit_writes(2, GroupLimits(64 * MIB, 10, 0.5), swap=True) == [
        ("", "memory.max", str(64 * MIB)),
        ("", "memory.swap.max", "0"),
        ("", "pids.max", "10"),
        ("", "cpu.max", "50000 100000"),
    ]


def test_the_cpu_classes_are_cpu_idle_and_weights() -> None:
    normal, warming, idle = CpuClass.NORMAL, CpuClass.WARMING, CpuClass.IDLE
    with_idle = functools.partial(class_writes, 1, has_idle=True)
    assert with_idle(now=normal, to=warming) == [("cpu", "cpu.shares", "128")]
    assert with_idle(now=warming, to=normal) == [("cpu", "cpu.shares", "1024")]
    assert with_idle(now=normal, to=idle) == [("cpu", "cpu.idle", "1")]
    assert with_idle(now=idle, to=normal) == [("cpu", "cpu.idle", "0")]
    # The kernel refuses a weight while cpu.idle is 1: the weight goes first into idle,
    # last out of it.
    assert with_idle(now=warming, to=idle) == [
        ("cpu", "cpu.shares", "1024"),
        ("cpu", "cpu.idle", "1"),
    ]
    assert with_idle(now=idle, to=warming) == [
        ("cpu", "cpu.idle", "0"),
        ("cpu", "cpu.shares", "128"),
    ]
    assert class_writes(2, has_idle=True, now=normal, to=warming) == [("", "cpu.weight", "12")]
    assert class_writes(2, has_idle=True, now=normal, to=idle) == [("", "cpu.idle", "1")]
    # Before Linux 5.15: the lowest weight stands in for the idle class.
    assert class_writes(1, has_idle=False, now=normal, to=idle) == [("cpu", "cpu.shares", "2")]
    assert class_writes(1, has_idle=False, now=idle, to=warming) == [("cpu", "cpu.shares", "128")]
    assert class_writes(2, has_idle=False, now=warming, to=idle) == [("", "cpu.weight", "1")]
    assert class_writes(2, has_idle=False, now=idle, to=normal) == [("", "cpu.weight", "100")]
    for version, has_idle, c in itertools.product((1, 2), (True, False), CpuClass):
        assert class_writes(version, has_idle=has_idle, now=c, to=c) == []


def test_the_settings_give_the_whole_execution_its_limits() -> None:
    settings = Settings(auth_token="t" * 32, memory_limit_mb=300, max_processes=20)
    assert group_limits(settings) == GroupLimits(300 * MIB, 20 + SANDBOX_TASKS, 1.0, 20)
    never = Settings(auth_token="t" * 32, cpu_idle_after_ms=0, cpu_limit_cores=None)
    assert group_limits(never).cpu_idle_after_ms is None
    assert group_limits(never).cpu_cores is None


def test_the_sandbox_enters_its_cgroups_before_anything_else_runs() -> None:
    argv = enter_argv([Path("/cg/a/cgroup.procs"), Path("/cg/b/cgroup.procs")], ["bwrap", "x"])
    assert argv == [
        "/bin/sh", "-c", ENTER, "sh", "/cg/a/cgroup.procs", "/cg/b/cgroup.procs", "--",
        "bwrap", "x",
    ]  # fmt: skip


def test_the_entry_script_moves_itself_then_execs(tmp_path: Path) -> None:
    import subprocess

    procs = tmp_path / "cgroup.procs"
    out = subprocess.run(
        enter_argv([procs], ["/bin/echo", "started"]), capture_output=True, text=True, check=True
    )
    assert out.stdout == "started\n"
    assert procs.read_text() == "0\n"
    failed = subprocess.run(enter_argv([tmp_path / "missing" / "x"], ["/bin/echo", "no"]))
    assert failed.returncode == 125  # never started outside its cgroup


def test_subtree_names_are_per_state_directory(tmp_path: Path) -> None:
    a, b = subtree_name(tmp_path / "a"), subtree_name(tmp_path / "b")
    assert a != b and a.startswith("sandbox-controller-")
    assert subtree_name(tmp_path / "a") == a


def _fake_v2(tmp_path: Path) -> Path:
    own = tmp_path / "system.slice" / "unit.service"
    own.mkdir(parents=True)
    (own / "memory.swap.max").write_text("max\n")
    return own


def test_v2_tree_against_its_file_interface(tmp_path: Path) -> None:
    own = _fake_v2(tmp_path)
    tree = SandboxCgroups(Placement(2, {"": own}), "sandbox-controller-x")
    assert tree.cpu
    root = own / "sandbox-controller-x"
    root.mkdir()
    (root / "memory.swap.max").write_text("max\n")  # what the kernel gives a v2 cgroup
    assert tree.open() == 0
    assert tree.swap_capped
    assert (own / "cgroup.subtree_control").read_text() == "+memory +pids +cpu"
    assert (root / "cgroup.subtree_control").read_text() == "+memory +pids +cpu"
    group = tree.create("sb-1", GroupLimits(128 * MIB, 9, 2.0))
    assert group.procs_files == [root / "sb-1" / "cgroup.procs"]
    assert (root / "sb-1" / "memory.max").read_text() == str(128 * MIB)
    # A real v2 cgroup has memory.swap.max from its mkdir (then set to 0, as data
    # above); this fake one has none, so nothing is written to it.
    assert not (root / "sb-1" / "memory.swap.max").exists()
    assert (root / "sb-1" / "pids.max").read_text() == "9"
    assert (root / "sb-1" / "cpu.max").read_text() == "200000 100000"
    # What the kernel would report after a run killed at its limit.
    (root / "sb-1" / "memory.peak").write_text(f"{128 * MIB}\n")
    (root / "sb-1" / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 1\noom_kill 2\n")
    (root / "sb-1" / "pids.events").write_text("max 3\n")
    usage = group.usage()
    assert (usage.peak_bytes, usage.oom_kills, usage.tasks_refused) == (128 * MIB, 2, 3)
    # No idle class asked for: the normal class throughout, nothing written for it.
    assert group.idle_class is None
    group.make_idle()
    assert not (root / "sb-1" / "cpu.weight").exists()


def test_v2_cpu_classes_against_its_file_interface(tmp_path: Path) -> None:
    own = _fake_v2(tmp_path)
    root = own / "sandbox-controller-x"
    root.mkdir()
    (root / "cpu.idle").write_text("0\n")  # Linux 5.15 on
    tree = SandboxCgroups(Placement(2, {"": own}), "sandbox-controller-x")
    tree.open()
    assert tree.has_idle
    group = tree.create("sb-1", GroupLimits(128 * MIB, 9, None, cpu_idle_after_ms=20))
    assert group.idle_class == IdleClass(after_s=0.02, has_idle=True)

    def cpu_files() -> tuple[str, str]:
        # (a real cgroup has both from its mkdir, at 0 and 100; this fake one as written)
        idle, weight = root / "sb-1" / "cpu.idle", root / "sb-1" / "cpu.weight"
        return (idle.read_text() if idle.exists() else "0"), weight.read_text()

    # Warming up: what runs comes first, what runs past its first moments after.
    assert cpu_files() == ("0", "12")
    group.make_normal()  # its run starts
    assert cpu_files() == ("0", "100")
    group.make_idle()  # CPU_IDLE_AFTER_MS into its run
    assert cpu_files() == ("1", "100")
    group.kill()  # dying processes free their memory in the normal class
    assert cpu_files() == ("0", "100")
    # A cgroup removed meanwhile (its run ended): nothing to do, no error.
    for file in (root / "sb-1").iterdir():
        file.unlink()
    (root / "sb-1").rmdir()
    group.make_idle()


def test_before_linux_5_15_the_idle_class_is_the_lowest_weight(tmp_path: Path) -> None:
    own = _fake_v2(tmp_path)
    (own / "sandbox-controller-x").mkdir()  # no cpu.idle
    tree = SandboxCgroups(Placement(2, {"": own}), "sandbox-controller-x")
    tree.open()
    assert not tree.has_idle
    group = tree.create("sb-1", GroupLimits(128 * MIB, 9, None, cpu_idle_after_ms=20))
    weight = own / "sandbox-controller-x" / "sb-1" / "cpu.weight"
    assert weight.read_text() == "12"  # warming up
    group.make_idle()
    assert weight.read_text() == "1"
    group.make_normal()
    assert weight.read_text() == "100"


def test_v1_usage_is_read_from_its_own_files(tmp_path: Path) -> None:
    memory, pids = tmp_path / "memory" / "sb", tmp_path / "pids" / "sb"
    memory.mkdir(parents=True)
    pids.mkdir(parents=True)
    (memory / "memory.max_usage_in_bytes").write_text("4096\n")
    (memory / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    (pids / "pids.events").write_text("max 0\n")
    usage = SandboxCgroup(1, {"memory": memory, "pids": pids}).usage()
    assert (usage.peak_bytes, usage.oom_kills, usage.tasks_refused) == (4096, 1, 0)


def test_reaping_removes_what_an_earlier_run_left(tmp_path: Path) -> None:
    own = tmp_path / "memory"
    own.mkdir()
    root = own / "sandbox-controller-x"
    (root / "sb-old").mkdir(parents=True)
    tree = SandboxCgroups(Placement(1, {"memory": own, "pids": tmp_path}), "sandbox-controller-x")
    assert tree.open() == 1
    assert not (root / "sb-old").exists()
    tree.close()
    assert not root.exists()
