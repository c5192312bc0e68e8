"""The service's cgroup subtrees on this host (local placement): sandboxes' and browsers'.

Each subtree is the service's own, named after its state directory (two services on a
host never reap each other's), made and reaped at start and removed at stop by its owner
(controller.execution.local for sandboxes, controller.browser.local for browsers); a
janitor removes it when the service ends without stopping (runner.cgroup).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from runner.cgroup import CgroupError, SandboxCgroups, host_placement

log = logging.getLogger(__name__)

PER_PROCESS_ONLY = "per process only (rlimits: RLIMIT_AS, RLIMIT_NPROC), no cgroup"


def subtree_name(state_dir: str | Path, suffix: str = "") -> str:
    """The subtree of the service with this state directory (``suffix``: which one)."""
    digest = hashlib.sha256(str(Path(state_dir).resolve()).encode()).hexdigest()
    return f"sandbox-controller-{digest[:12]}{suffix}"


def open_cgroups(state_dir: str | Path, suffix: str) -> tuple[SandboxCgroups | None, str]:
    """A subtree, made and reaped, and how limits are enforced; or None and why there
    are only per-process limits."""
    where = host_placement()
    if isinstance(where, str):
        return None, f"{PER_PROCESS_ONLY}: {where}"
    name = subtree_name(state_dir, suffix)
    tree = SandboxCgroups(where, name)
    try:
        reaped = tree.open(lock=Path(state_dir) / f"{name}.lock")
    except CgroupError as exc:
        return None, f"{PER_PROCESS_ONLY}: {exc}"
    if reaped:
        log.warning("reaped %d cgroups left by an earlier run of the service", reaped)
    return tree, tree.describe()
