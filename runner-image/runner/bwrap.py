"""Pure construction of the bubblewrap command line from a policy (and host facts found once)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from runner.contract import SandboxLimits
from runner.policy import (
    EGRESS_MOUNT,
    PROTECTED_DIRS,
    PROTECTED_FILES,
    SANDBOX_ENV,
    SANDBOX_GID,
    SANDBOX_UID,
    SUPPORT_MOUNT,
    WORKSPACE,
    Layout,
    egress_option,
)

BWRAP = "/usr/bin/bwrap"
CHROOT = "/usr/sbin/chroot"
TOP_LEVEL_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# The sandbox-side code runs from bytecode compiled once by the sandbox's own interpreter
# (a script given as source would be compiled again at every start): source module in
# this package -> compiled name in the support directory's "sandbox" folder.
SANDBOX_CODE = {
    "stub.py": "stub.pyc",
    "sandbox_files.py": "_sandbox_files.pyc",
    "kernel.py": "_kernel.pyc",
    "display.py": "_display.pyc",
}
STUB_NAME = "stub.pyc"
EGRESS_DIR = "@EGRESS_DIR@"
"""Replaced by the host directory of each sandbox's own egress socket at its start."""
NETWORK_NAMESPACE_FIRST = ("/usr/bin/unshare", "--user", "--net", "--map-current-user", "--")
"""Under gVisor: a user and network namespace made before bubblewrap (util-linux's
unshare, which then execs it), since bubblewrap cannot make a working one there (below)."""


@dataclass(frozen=True)
class HostFacts:
    """What the host looks like, read once at start so the argv builder stays pure."""

    symlinks: dict[str, str]
    """Top-level links such as /bin -> usr/bin (merged /usr)."""
    directories: frozenset[str]
    """Paths of the layout that exist on the host as directories or files."""
    gvisor: bool = False
    """The kernel is gVisor's (a runner pod of a gVisor RuntimeClass).  Its new network
    namespaces come with loopback up and refuse bubblewrap's setting it up again
    ("loopback: Failed RTM_NEWADDR"), and it has no user-namespace limit for bubblewrap's
    --disable-userns to set: the network namespace is made before bubblewrap
    (NETWORK_NAMESPACE_FIRST) and nested namespaces are refused by the seccomp filter
    alone (runner.seccomp), as they also are everywhere else."""


def is_gvisor(kernel_release: str) -> bool:
    """gVisor names itself in the kernel release it reports (e.g. "4.19.0-gvisor")."""
    return kernel_release.endswith("-gvisor")


def probe_host(layout: Layout) -> HostFacts:
    """Look at the host once: which top-level links exist and which layout paths exist."""
    symlinks = {p: os.readlink(p) for p in TOP_LEVEL_LINKS if os.path.islink(p)}
    candidates = (
        *layout.ro_paths,
        *layout.extra_ro_paths,
        *(p for p in TOP_LEVEL_LINKS if p not in symlinks),
    )
    existing = frozenset(p for p in candidates if os.path.lexists(p))
    return HostFacts(symlinks=symlinks, directories=existing, gvisor=is_gvisor(os.uname().release))


def bwrap_argv(
    layout: Layout,
    limits: SandboxLimits,
    host: HostFacts,
    status_fd: str,
    events_fd: str,
    seccomp_fd: str | None = None,
) -> list[str]:
    """The full argv that starts the stub inside a fresh sandbox.

    Order matters to bubblewrap: mounts are made in argument order, and the root is made
    read-only last so that nothing outside the workspace, /tmp and /dev/shm is writable.
    ``status_fd`` is the stub's status descriptor as text (a number, or a placeholder that
    the caller replaces once the pipe exists); ``events_fd``, likewise, the code's events
    (rich results, violations as they happen: runner.display); ``seccomp_fd``, the
    descriptor bubblewrap reads the seccomp program from (see runner.seccomp).
    """
    if host.gvisor and seccomp_fd is None:
        # Without --disable-userns, the filter is all that refuses nested namespaces.
        raise ValueError("under gVisor a sandbox needs the seccomp filter (runner.seccomp)")
    argv = [
        *(NETWORK_NAMESPACE_FIRST if host.gvisor else ()),
        BWRAP,
        # Every namespace, including the network: only a private loopback exists inside.
        "--unshare-user",
        "--unshare-ipc",
        "--unshare-pid",
        # The stub is PID 1 of its namespace (no separate reaper process): a signal from
        # the code cannot kill it (on Linux; gVisor delivers it, which ends only that
        # execution: docs/kubernetes.md#gvisor), and when it exits the kernel kills
        # everything left.
        "--as-pid-1",
        *(() if host.gvisor else ("--unshare-net",)),
        "--unshare-uts",
        "--unshare-cgroup-try",
        # No nested user namespaces: they are the kernel's widest attack surface.
        *(() if host.gvisor else ("--disable-userns",)),
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_GID),
        "--hostname",
        "sandbox",
        # Killed with its supervisor; in its own session so it cannot reach our terminal.
        "--die-with-parent",
        "--new-session",
        "--clearenv",
    ]
    for name, value in SANDBOX_ENV.items():
        argv += ["--setenv", name, value]
    for path in layout.ro_paths:
        if path in host.directories:
            argv += ["--ro-bind", path, path]
    for link in TOP_LEVEL_LINKS:
        if link in host.symlinks:
            argv += ["--symlink", host.symlinks[link], link]
        elif link in host.directories:
            argv += ["--ro-bind", link, link]
    for path in layout.extra_ro_paths:
        if path in host.directories:
            argv += ["--ro-bind", path, path]
    support = layout.support_dir
    argv += [
        # One prepared /etc (copies of the few host files Python needs, and a synthetic
        # passwd, group and hosts): a single mount instead of one per file.
        "--ro-bind",
        f"{support}/etc",
        "/etc",
        "--ro-bind",
        f"{support}/sandbox",
        SUPPORT_MOUNT,
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        str(limits.tmp_bytes),
        "--tmpfs",
        "/dev/shm",
        "--size",
        str(limits.tmp_bytes),
        "--tmpfs",
        "/tmp",
        # The workspace is a size-limited tmpfs of this sandbox alone: fresh and empty for
        # every execution, gone with the mount namespace when the sandbox ends.
        "--size",
        str(limits.workspace_bytes),
        "--tmpfs",
        WORKSPACE,
    ]
    # .env and secrets/ are read-only placeholders: they cannot be created or written.
    for name in PROTECTED_FILES:
        argv += ["--ro-bind", f"{support}/empty-file", f"{WORKSPACE}/{name}"]
    for name in PROTECTED_DIRS:
        argv += ["--ro-bind", f"{support}/empty-dir", f"{WORKSPACE}/{name}"]
    if layout.egress:
        argv += ["--ro-bind", EGRESS_DIR, EGRESS_MOUNT]
    argv += [
        *(["--seccomp", seccomp_fd] if seccomp_fd else []),
        "--remount-ro",
        "/",
        "--chdir",
        WORKSPACE,
        "--",
        layout.python,
        "-I",
        # No site module at start-up: the stub adds the same paths itself (see
        # support.site_config), skipping the distribution's sitecustomize and the rest
        # of site's start-up work, which cost more than the rest of the interpreter.
        "-S",
        f"{SUPPORT_MOUNT}/{STUB_NAME}",
        status_fd,
        events_fd,
        *([egress_option()] if layout.egress else []),
        *layout.preload,
    ]
    return argv


def launcher_argv(sandbox_argv: list[str], uid: int | None, gid: int | None) -> list[str]:
    """Prefix the bwrap argv so that a service running as root never sandboxes as root.

    ``chroot --userspec U:G --groups G --skip-chdir /`` (coreutils) changes nothing but the
    ids: uid ``uid``, gid ``gid``, no other groups, then execs bwrap.  It is the cheapest
    such program here (libc only; setpriv costs about 0.4 ms more per sandbox).  The
    parent-death signal and no_new_privs come from bwrap itself (--die-with-parent kills
    the sandbox when the service dies, even by SIGKILL; bwrap always sets no_new_privs).
    Without ``uid`` (the service is not root) bwrap runs as the service's own user.
    """
    if uid is None or gid is None:
        return list(sandbox_argv)
    return [
        CHROOT,
        f"--userspec={uid}:{gid}",
        f"--groups={gid}",
        "--skip-chdir",
        "/",
        *sandbox_argv,
    ]
