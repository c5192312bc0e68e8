"""Host settings that refuse unprivileged user namespaces, and the fix for each.

Sandboxes (and, as root, each browser's Chromium) run bubblewrap as an unprivileged uid,
which needs a user namespace.  When the start-up self-test fails, the reason it gives is
bubblewrap's ("setting up uid map: Permission denied"); these name the host's setting
behind it, and what to do, in /health and the log.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

PROC_SYS = Path("/proc/sys")
APPARMOR_PROFILE = "deploy/apparmor/sandbox-controller-bwrap"

RESTRICTIONS = (
    (
        "kernel/apparmor_restrict_unprivileged_userns",
        "1",
        "AppArmor refuses unprivileged user namespaces on this host "
        "(kernel.apparmor_restrict_unprivileged_userns=1, Ubuntu 23.10 and later): install "
        f"the service's profile for bubblewrap ({APPARMOR_PROFILE}; docs/install.md), or "
        "set that sysctl to 0",
    ),
    (
        "kernel/unprivileged_userns_clone",
        "0",
        "the kernel refuses unprivileged user namespaces "
        "(kernel.unprivileged_userns_clone=0): set it to 1",
    ),
    (
        "user/max_user_namespaces",
        "0",
        "the kernel allows no user namespaces (user.max_user_namespaces=0): raise it",
    ),
)
"""(sysctl under /proc/sys, the value that refuses, what it means and the fix)."""


def restrictions(read: Callable[[str], str | None]) -> list[str]:
    """What refuses unprivileged user namespaces, given ``read(sysctl)`` (None: absent)."""
    return [why for name, refusing, why in RESTRICTIONS if read(name) == refusing]


def read_sysctl(name: str, root: Path = PROC_SYS) -> str | None:
    try:
        return (root / name).read_text().strip()
    except OSError:
        return None


def explained(detail: str, read: Callable[[str], str | None] = read_sysctl) -> str:
    """``detail`` (a failed self-test's), with what on this host refuses user namespaces."""
    found = restrictions(read)
    return f"{detail} ({'; '.join(found)})" if found else detail
