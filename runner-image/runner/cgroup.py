"""The memory cgroup a runner process lives in (a runner pod's own): has it OOM-killed anything?

In a container with its own cgroup namespace the pod's cgroup is the root of
/sys/fs/cgroup: ``memory.events`` under cgroup v2, ``memory/memory.oom_control`` under
v1 (both count ``oom_kill``).  Read before and after the one run of a pod, the
difference says whether the pod's memory limit, which bounds every process of the
execution and its in-memory filesystems together, killed part of it.
"""

from __future__ import annotations

from pathlib import Path

COUNTERS = (
    Path("/sys/fs/cgroup/memory.events"),
    Path("/sys/fs/cgroup/memory/memory.oom_control"),
)


def oom_kills(counters: tuple[Path, ...] = COUNTERS) -> int | None:
    """How many processes the cgroup's memory limit has killed; None when it cannot be read."""
    for path in counters:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name == "oom_kill" and value.strip().isdigit():
                return int(value)
    return None
