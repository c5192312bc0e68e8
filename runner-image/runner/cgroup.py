"""Cgroups: a runner pod's own (did its limit kill anything?) and, locally, one per sandbox.

In a runner pod the pod's cgroup is the root of /sys/fs/cgroup (its own cgroup
namespace): ``memory.events`` under cgroup v2, ``memory/memory.oom_control`` under v1
both count ``oom_kill``.  Read before and after the pod's one run, the difference says
whether the pod's memory limit killed part of the execution.

In local mode every sandbox gets a cgroup of its own, made before it starts and removed
after its run, under a subtree the service owns (``SandboxCgroups``): memory (every
process and the tmpfs pages they write, together), tasks and CPU of the whole execution,
where rlimits only bound each process.  cgroup v2 (one directory) and v1 (a directory per
controller: this machine's memory, pids and cpu) share one interface; what differs is
data (``limit_writes``, ``class_writes``, the v2 and v1 file names), tested as such.  The
sandbox's first process enters its cgroups itself (``enter_argv``) before it execs
bubblewrap, so nothing of the sandbox ever runs outside them.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import fcntl
import logging
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

COUNTERS = (
    Path("/sys/fs/cgroup/memory.events"),
    Path("/sys/fs/cgroup/memory/memory.oom_control"),
)
V1_CONTROLLERS = ("memory", "pids", "cpu")
"""What a v1 sandbox cgroup is made in; memory and pids are required, cpu is optional."""
REQUIRED = ("memory", "pids")
CPU_PERIOD_US = 100_000
TCP_MAX_BYTES = 64 << 20
SANDBOX_TASKS = 2
"""Tasks of the sandbox's own machinery (bubblewrap, and the stub's supervisor, PID 1 of
the sandbox) on top of MAX_PROCESSES: the code's processes and threads, its main process
included, get what the setting says."""
ENTER = 'while [ "$1" != -- ]; do echo 0 > "$1" || exit 125; shift; done; shift; exec "$@"'
"""sh: move this process into each cgroup named before ``--`` (0 means the writer), then
exec the rest: bubblewrap and everything it starts are inside from their first instant."""
SH = "/bin/sh"
JANITOR = """
lock="$1"; shift
cat > /dev/null
exec 9>> "$lock"
flock 9
for root in "$@"; do
    tries=0
    while [ -d "$root" ] && [ "$tries" -lt 100 ]; do
        for group in "$root"/*/; do
            [ -d "$group" ] || continue
            while read -r pid; do kill -9 "$pid" 2> /dev/null; done < "${group}cgroup.procs"
            rmdir "$group" 2> /dev/null
        done
        rmdir "$root" 2> /dev/null || { tries=$((tries + 1)); sleep 0.05; }
    done
done
"""
"""sh: wait for end of input (the service, which holds the pipe, is gone), then, holding
the lock, kill what is left in each cgroup of each root, remove them and the root (at
most 100 rounds of 50 ms while processes exit)."""
JANITOR_WAIT_S = 2.0
IDLE_FILE = "cpu.idle"
WEIGHT_FILES = {1: "cpu.shares", 2: "cpu.weight"}
WEIGHTS = {
    1: {"normal": "1024", "warming": "128", "lowest": "2"},
    2: {"normal": "100", "warming": "12", "lowest": "1"},
}
"""By cgroup version: the default weight, a warming sandbox's (an eighth of it) and the
lowest, which stands in for the idle class before Linux 5.15 (without its preemption on
wake-up)."""
V1_MEMSW = "memory.memsw.limit_in_bytes"
V1_TCP = "memory.kmem.tcp.limit_in_bytes"

log = logging.getLogger(__name__)


def oom_kills_in(files: Iterable[Path]) -> int | None:
    """The ``oom_kill`` count of the first readable file (memory.events or
    memory.oom_control); None when none can be read."""
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name == "oom_kill" and value.strip().isdigit():
                return int(value)
    return None


def oom_kills(counters: tuple[Path, ...] = COUNTERS) -> int | None:
    """How many processes this (pod's) cgroup's memory limit has killed."""
    return oom_kills_in(counters)


@dataclass(frozen=True)
class GroupLimits:
    """What one sandbox's cgroup allows, the whole execution together."""

    memory_bytes: int
    max_tasks: int
    cpu_cores: float | None = None
    """A quota in cores (None: no quota, only the fair share every cgroup gets)."""
    cpu_idle_after_ms: int | None = None
    """After this long into its run the execution moves to the idle CPU class (None:
    never, and no other class either: the sandbox stays in the normal one throughout)."""


@dataclass(frozen=True)
class GroupUsage:
    peak_bytes: int | None
    oom_kills: int | None
    tasks_refused: int | None
    """How many forks the task limit refused (pids.events ``max``)."""


def limit_writes(
    version: int, limits: GroupLimits, *, swap: bool, tcp: bool = False
) -> list[tuple[str, str, str]]:
    """The (controller, file, value) writes that set ``limits``, in the order they must go.

    ``swap``: the hierarchy accounts swap (v1 ``memory.memsw.*``, v2 ``memory.swap.max``);
    the execution then gets no swap beyond its memory, so the limit cannot be dodged by
    being paged out (v1 without it: swappiness 0 at least).  ``tcp``: v1's separate
    counter of TCP buffers (``memory.kmem.tcp.*``), which v1 leaves unlimited otherwise
    and v2 counts in ``memory.max`` anyway.  Under v2 every controller is in one
    directory (``""``).
    """
    memory, tasks = str(limits.memory_bytes), str(limits.max_tasks)
    quota = None if limits.cpu_cores is None else round(limits.cpu_cores * CPU_PERIOD_US)
    if version == 2:
        writes = [("", "memory.max", memory)]
        if swap:
            writes.append(("", "memory.swap.max", "0"))
        writes.append(("", "pids.max", tasks))
        if quota is not None:
            writes.append(("", "cpu.max", f"{quota} {CPU_PERIOD_US}"))
        return writes
    # v1: memsw (memory + swap) may never be below memory, so memory goes first.
    writes = [("memory", "memory.limit_in_bytes", memory)]
    if swap:
        writes.append(("memory", "memory.memsw.limit_in_bytes", memory))
    writes.append(("memory", "memory.swappiness", "0"))
    if tcp:
        writes.append(("memory", "memory.kmem.tcp.limit_in_bytes", str(tcp_bytes(limits))))
    writes.append(("pids", "pids.max", tasks))
    if quota is not None:
        writes += [
            ("cpu", "cpu.cfs_period_us", str(CPU_PERIOD_US)),
            ("cpu", "cpu.cfs_quota_us", str(quota)),
        ]
    return writes


class CpuClass(enum.Enum):
    """Where a sandbox stands for CPU against the others (docs/sandbox.md, "CPU")."""

    NORMAL = "normal"
    """A run in its first moments, a run ending, processes dying."""
    WARMING = "warming"
    """Warming up and waiting: an eighth of a normal share, ahead of idle runs."""
    IDLE = "idle"
    """A run past its first moments: the CPU the others leave."""


def class_writes(
    version: int, *, has_idle: bool, now: CpuClass, to: CpuClass
) -> list[tuple[str, str, str]]:
    """The (controller, file, value) writes that move a cgroup from one CPU class to
    another, in an order the kernel accepts (it refuses a weight while ``cpu.idle`` is 1).

    ``cpu.idle`` (v1 and v2, Linux 5.15 on: ``has_idle``) makes the cgroup idle against
    its siblings, the other sandboxes: it runs on what CPU they leave (with a floor of
    3/1024 of a normal share, up to its quota), and a sibling waking up preempts it.
    Without it, the lowest weight stands in.
    """
    controller, weights = ("" if version == 2 else "cpu"), WEIGHTS[version]

    def state(of: CpuClass) -> tuple[bool, str]:
        if of is CpuClass.WARMING:
            return False, weights["warming"]
        if of is CpuClass.IDLE:
            return (True, weights["normal"]) if has_idle else (False, weights["lowest"])
        return False, weights["normal"]

    (idle_now, weight_now), (idle_to, weight_to) = state(now), state(to)
    writes = []
    if idle_now and not idle_to:
        writes.append((controller, IDLE_FILE, "0"))
    if weight_now != weight_to:
        writes.append((controller, WEIGHT_FILES[version], weight_to))
    if idle_to and not idle_now:
        writes.append((controller, IDLE_FILE, "1"))
    return writes


@dataclass(frozen=True)
class IdleClass:
    """When a sandbox's cgroup moves to the idle CPU class, and how the kernel does it."""

    after_s: float
    """How far into its run."""
    has_idle: bool
    """``cpu.idle`` exists (else: the lowest weight)."""


def tcp_bytes(limits: GroupLimits) -> int:
    """v1's TCP buffer limit beside the memory limit: a quarter of it, at most 64 MiB (a
    sandbox has only its own loopback; this bounds what it can queue there)."""
    return min(limits.memory_bytes // 4, TCP_MAX_BYTES)


def enter_argv(procs_files: Iterable[Path], argv: list[str]) -> list[str]:
    """``argv`` started inside the cgroups whose ``cgroup.procs`` files are given."""
    return [SH, "-c", ENTER, "sh", *(str(p) for p in procs_files), "--", *argv]


# --- where the cgroups are ---------------------------------------------------------------


Mount = tuple[Path, str]
"""A cgroup hierarchy's mount point, and the cgroup it shows there (``/`` unless the
mount is of a subtree, as in some containers)."""


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (``\\040``)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mounts(mountinfo: str) -> tuple[dict[str, Mount], Mount | None]:
    """The v1 hierarchies by controller, and the v2 mount, from /proc/self/mountinfo."""
    v1: dict[str, Mount] = {}
    v2: Mount | None = None
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3:
            continue
        mount = (Path(_unescape(fields[4])), _unescape(fields[3]))
        fstype, options = tail[0], tail[2].split(",")
        if fstype == "cgroup2" and v2 is None:
            v2 = mount
        elif fstype == "cgroup":
            for option in options:  # the controllers, among rw/ro and name=... options
                if option not in ("rw", "ro") and "=" not in option:
                    v1.setdefault(option, mount)
    return v1, v2


def _directory(mount: Mount, own: str) -> Path | None:
    """Where cgroup ``own`` is under ``mount``; None when the mount does not show it."""
    point, root = mount
    if root != "/" and own != root and not own.startswith(root.rstrip("/") + "/"):
        return None
    relative = own[len(root) :] if root != "/" else own
    return point / relative.lstrip("/")


def parse_own(proc_cgroup: str) -> tuple[dict[str, str], str | None]:
    """This process's v1 cgroup by controller, and its v2 cgroup, from /proc/self/cgroup."""
    v1: dict[str, str] = {}
    v2: str | None = None
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            v2 = path
        for controller in controllers.split(","):
            if controller:
                v1[controller] = path
    return v1, v2


@dataclass(frozen=True)
class Placement:
    """Where the service's subtree goes: one directory per controller (v1) or one (v2)."""

    version: int
    parents: dict[str, Path]
    """By controller ("" under v2): the directory the subtree is made in."""


def placement(
    mounts: tuple[dict[str, Mount], Mount | None],
    own: tuple[dict[str, str], str | None],
    v2_controllers: set[str],
) -> Placement | str:
    """Where this process may make its sandboxes' cgroups, or why it cannot (a sentence).

    v2 when its hierarchy has the memory and pids controllers (the default on current
    Debian and Ubuntu); else v1 when both are mounted (older hosts, this one).  The
    subtree goes under the process's own cgroup: the only place a delegated service
    (systemd ``Delegate=yes``) or a container may write.
    """
    (v1_mounts, v2_mount), (v1_own, v2_own) = mounts, own
    if v2_mount is not None and v2_own is not None and set(REQUIRED) <= v2_controllers:
        directory = _directory(v2_mount, v2_own)
        if directory is not None:
            return Placement(2, {"": directory})
    found = {
        c: _directory(v1_mounts[c], v1_own[c])
        for c in V1_CONTROLLERS
        if c in v1_mounts and c in v1_own
    }
    usable = {c: d for c, d in found.items() if d is not None}
    if all(c in usable for c in REQUIRED):
        return Placement(1, usable)
    missing = [c for c in REQUIRED if c not in v1_mounts and c not in v2_controllers]
    return (
        "no cgroup hierarchy with the memory and pids controllers"
        + (f" (missing: {', '.join(missing)})" if missing else "")
        + " is mounted for this process"
    )


# --- the files ---------------------------------------------------------------------------


class CgroupError(Exception):
    """A cgroup could not be made or set up (the message says which file and why)."""


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        raise CgroupError(f"cannot write {value!r} to {path}: {exc.strerror or exc}") from exc


def _read_int(path: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(path.read_text().split()[0])
    return None


def _keyed(path: Path, key: str) -> int | None:
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
    return None


def _pids(directory: Path) -> list[int]:
    with contextlib.suppress(OSError):
        return [int(p) for p in (directory / "cgroup.procs").read_text().split()]
    return []


def _kill_inside(directory: Path) -> None:
    """SIGKILL every process in ``directory``'s cgroup.  Each is pinned by a pidfd before
    the cgroup is read again, and only those still inside are signalled, so a pid number
    freed and reused since the first listing is never hit: two reads, whatever the count."""
    pinned = []
    for pid in _pids(directory):
        try:
            pinned.append((pid, os.pidfd_open(pid)))
        except OSError:
            continue  # gone already
    if not pinned:
        return
    try:
        inside = set(_pids(directory))
        for pid, pidfd in pinned:
            if pid in inside:
                with contextlib.suppress(OSError):
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    finally:
        for _, pidfd in pinned:
            os.close(pidfd)


class SandboxCgroup:
    """One sandbox's cgroup (a directory per controller under v1, one under v2)."""

    def __init__(
        self, version: int, dirs: dict[str, Path], idle_class: IdleClass | None = None
    ) -> None:
        self.version = version
        self.dirs = dirs
        self.name = next(iter(dirs.values())).name
        self.idle_class = idle_class
        """How it moves between the CPU classes (None: it stays in the normal one)."""
        self._class = CpuClass.NORMAL

    @property
    def procs_files(self) -> list[Path]:
        """Where the sandbox's first process writes itself: every directory's procs."""
        return [d / "cgroup.procs" for d in self.dirs.values()]

    def _dir(self, controller: str) -> Path:
        return self.dirs["" if self.version == 2 else controller]

    def usage(self) -> GroupUsage:
        memory, pids = self._dir("memory"), self._dir("pids")
        if self.version == 2:
            peak = _read_int(memory / "memory.peak")
            kills = oom_kills_in([memory / "memory.events"])
        else:
            peak = _read_int(memory / "memory.max_usage_in_bytes")
            kills = oom_kills_in([memory / "memory.oom_control"])
        return GroupUsage(
            peak_bytes=peak, oom_kills=kills, tasks_refused=_keyed(pids / "pids.events", "max")
        )

    def make_warming(self) -> None:
        """Move to the warming CPU class (a sandbox made, until its run starts)."""
        self._set_class(CpuClass.WARMING)

    def make_idle(self) -> None:
        """Move to the idle CPU class (a run past its first moments)."""
        self._set_class(CpuClass.IDLE)

    def make_normal(self) -> None:
        """Back to the normal CPU class (a run starting, or ending: its harvest and its
        dying processes must not wait behind the others)."""
        self._set_class(CpuClass.NORMAL)

    def _set_class(self, to: CpuClass) -> None:
        if self.idle_class is None or self._class is to:
            return
        writes = class_writes(
            self.version, has_idle=self.idle_class.has_idle, now=self._class, to=to
        )
        for controller, file, value in writes:
            try:
                (self._dir(controller) / file).write_text(value)
            except FileNotFoundError:
                return  # removed already: nothing left to schedule
            except OSError as exc:  # never silent, never fatal: the limits do not depend on it
                log.warning("cannot write %s to %s of cgroup %s: %s", value, file, self.name, exc)
                return
        self._class = to

    def kill(self) -> None:
        """SIGKILL whatever is still inside (cgroup.kill where the kernel has it), then
        give it the normal CPU class: dying processes free their memory on their own
        time, which must not wait behind other sandboxes."""
        self._kill()
        self.make_normal()

    def _kill(self) -> None:
        if self.version == 2 and (self.dirs[""] / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                (self.dirs[""] / "cgroup.kill").write_text("1")
                return
        # Under v1 every hierarchy's directory holds the same processes (the sandbox's
        # first one entered them all, and a sandbox cannot move itself): one serves.
        _kill_inside(next(iter(self.dirs.values())))

    def remove(self) -> bool:
        """Remove the directories, killing what is left in them; False while some are
        busy (processes still exiting: try again).  The removal comes first: after the
        sandbox's own end, an empty cgroup is the common case, and costs no listing."""
        done = True
        for directory in self.dirs.values():
            try:
                directory.rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise CgroupError(f"cannot remove {directory}: {exc.strerror}") from exc
                done = False
        if not done:
            self.kill()
        return done


class SandboxCgroups:
    """The service's subtree: a cgroup per sandbox, and the reaping of leftovers."""

    def __init__(self, where: Placement, subtree: str) -> None:
        self.version = where.version
        self.roots = {c: parent / subtree for c, parent in where.parents.items()}
        self.cpu = self.version == 2 or "cpu" in self.roots
        self.has_idle = False
        """Whether the kernel has ``cpu.idle`` (known after open)."""
        self._janitor: subprocess.Popen[bytes] | None = None
        self.swap_capped = True
        """Whether the execution's memory can be kept from swap (known after open)."""

    def describe(self) -> str:
        controllers = "memory, pids" + (", cpu" if self.cpu else "")
        subtree = next(iter(self.roots.values())).name
        swap = "" if self.swap_capped else "; swap is on and not accounted: not capped"
        return f"cgroup v{self.version} per execution ({controllers}; subtree {subtree}{swap})"

    def open(self, lock: Path | None = None) -> int:
        """Make the subtree (reaping what a crashed predecessor left); how many it reaped.

        With ``lock`` (a file of the service's own), a janitor is started too: a small
        process of its own session that waits for the service to end, however it ends
        (SIGKILL included), then kills what is left in the subtree and removes it.  The
        lock keeps a predecessor's janitor and this start from working at once.
        """
        held = _locked(lock) if lock is not None else None
        try:
            for directory in self.roots.values():
                try:
                    directory.mkdir(exist_ok=True)
                except OSError as exc:
                    raise CgroupError(f"cannot make {directory}: {exc.strerror or exc}") from exc
            if self.version == 2:
                self._enable_v2()
            memory = self._root("memory")
            accounted = (memory / ("memory.swap.max" if self.version == 2 else V1_MEMSW)).exists()
            self.swap_capped = accounted or not host_swaps()
            self.has_idle = self.cpu and (self._root("cpu") / IDLE_FILE).exists()
            reaped = self.reap()
        finally:
            if held is not None:
                os.close(held)  # releases the lock
        if lock is not None:
            self._janitor = subprocess.Popen(
                janitor_argv(lock, list(self.roots.values())),
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # not in the service's group: its signals miss it
            )
        return reaped

    def _enable_v2(self) -> None:
        """Give the subtree's children the controllers: in the service's own cgroup, then
        in the subtree.

        v2 lets a cgroup other than the root hand controllers down only while it holds
        no process, so a service in its own cgroup (a systemd unit with Delegate=yes)
        first moves its processes into a leaf, ``service``, beside the subtree.  The
        kernel says ENOENT for a controller it cannot give before EBUSY for processes,
        so both are handled in turn.
        """
        root = self.roots[""]
        own = root.parent
        for directory in (own, root):
            moved = False
            while True:
                wanted = "+memory +pids" + (" +cpu" if self.cpu else "")
                try:
                    (directory / "cgroup.subtree_control").write_text(wanted)
                    break
                except OSError as exc:
                    if exc.errno == errno.EBUSY and directory == own and not moved:
                        self._move_into_leaf(own)
                        moved = True
                    elif exc.errno == errno.ENOENT and self.cpu:
                        self.cpu = False  # cpu not delegated here: memory and pids suffice
                    else:
                        raise CgroupError(
                            f"cannot enable {wanted} in {directory}: {exc.strerror or exc}"
                        ) from exc

    @staticmethod
    def _move_into_leaf(own: Path) -> None:
        leaf = own / "service"
        try:
            leaf.mkdir(exist_ok=True)
        except OSError as exc:
            raise CgroupError(f"cannot make {leaf}: {exc.strerror or exc}") from exc
        for pid in _pids(own):
            with contextlib.suppress(OSError):  # gone meanwhile: nothing to move
                (leaf / "cgroup.procs").write_text(str(pid))

    def _root(self, controller: str) -> Path:
        return self.roots["" if self.version == 2 else controller]

    def create(self, name: str, limits: GroupLimits) -> SandboxCgroup:
        dirs = {c: root / name for c, root in self.roots.items()}
        if not self.cpu:
            limits = _no_cpu(limits)  # neither a quota nor the idle class
        after_ms = limits.cpu_idle_after_ms
        idle_class = None if after_ms is None else IdleClass(after_ms / 1000, self.has_idle)
        group = SandboxCgroup(self.version, dirs, idle_class)
        try:
            for directory in dirs.values():
                directory.mkdir()
            memory = group._dir("memory")
            swap = (memory / ("memory.swap.max" if self.version == 2 else V1_MEMSW)).exists()
            tcp = self.version == 1 and (memory / V1_TCP).exists()
            for controller, file, value in limit_writes(self.version, limits, swap=swap, tcp=tcp):
                _write(group._dir(controller or "memory") / file, value)
        except (OSError, CgroupError) as exc:
            group.remove()
            if isinstance(exc, CgroupError):
                raise
            raise CgroupError(f"cannot make the cgroup {name}: {exc.strerror or exc}") from exc
        # A sandbox warms up in the warming class: what runs now (executions in their
        # first moments, the service) comes first, and a caller who uses sandboxes up as
        # fast as they start waits on its own refills; yet runs past their first moments
        # (idle) do not hold up a warm-up that a request may be waiting for.  Its run
        # starts in the normal class (runner.supervisor).
        group.make_warming()
        return group

    def leftovers(self) -> list[SandboxCgroup]:
        names: set[str] = set()
        for root in self.roots.values():
            with contextlib.suppress(OSError):
                names |= {p.name for p in root.iterdir() if p.is_dir()}
        return [
            SandboxCgroup(self.version, {c: root / n for c, root in self.roots.items()})
            for n in sorted(names)
        ]

    def reap(self, wait_s: float = 5.0) -> int:
        """Kill and remove every sandbox cgroup left in the subtree; how many there were."""
        found = self.leftovers()
        deadline = time.monotonic() + wait_s
        pending = list(found)
        while pending:
            pending = [g for g in pending if not g.remove()]
            if pending and time.monotonic() > deadline:
                names = ", ".join(g.name for g in pending)
                raise CgroupError(f"cgroups still busy after {wait_s:.0f}s: {names}")
            if pending:
                time.sleep(0.01)
        return len(found)

    def close(self) -> None:
        """Reap, then remove the subtree itself; the janitor then has nothing to do."""
        try:
            self.reap()
            for directory in self.roots.values():
                with contextlib.suppress(FileNotFoundError):
                    directory.rmdir()
        finally:
            janitor, self._janitor = self._janitor, None
            if janitor is not None and janitor.stdin is not None:
                janitor.stdin.close()  # the end it waits for
                with contextlib.suppress(subprocess.TimeoutExpired):
                    janitor.wait(JANITOR_WAIT_S)


def _locked(lock: Path) -> int:
    """An exclusive flock on ``lock`` (its descriptor: closing it releases the lock)."""
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as exc:
        raise CgroupError(f"cannot lock {lock}: {exc.strerror or exc}") from exc
    return fd


def janitor_argv(lock: Path, roots: list[Path]) -> list[str]:
    return [SH, "-c", JANITOR, "janitor", str(lock), *(str(r) for r in roots)]


def host_swaps(swaps: Path = Path("/proc/swaps")) -> bool:
    """Whether the host has any swap space on."""
    with contextlib.suppress(OSError):
        return len(swaps.read_text().strip().splitlines()) > 1
    return False


def _no_cpu(limits: GroupLimits) -> GroupLimits:
    """``limits`` without what needs the cpu controller (a quota, the idle class)."""
    return GroupLimits(limits.memory_bytes, limits.max_tasks)


def host_placement() -> Placement | str:
    """``placement`` for this process, read from /proc and /sys."""
    try:
        mounts = parse_mounts(Path("/proc/self/mountinfo").read_text())
        own = parse_own(Path("/proc/self/cgroup").read_text())
    except OSError as exc:
        return f"cannot read this process's cgroups: {exc}"
    controllers: set[str] = set()
    v2 = _directory(mounts[1], own[1]) if mounts[1] is not None and own[1] is not None else None
    if v2 is not None:
        with contextlib.suppress(OSError):
            controllers = set((v2 / "cgroup.controllers").read_text().split())
    return placement(mounts, own, controllers)
