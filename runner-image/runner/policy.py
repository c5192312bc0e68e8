"""The sandbox policy as data: limits, what the sandbox sees, and the environment it gets.

Asymmetric defaults, as in the best sandboxes of the field: reads are limited to what
Python needs (the rest of the host is simply not mounted), writes are allowed only in
the execution's own workspace and private /tmp, and there is no network at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MIB = 1024 * 1024

# The only environment the sandboxed code ever sees.  Nothing of the service's
# environment is passed through: bubblewrap itself is started with this set too.
SANDBOX_ENV: dict[str, str] = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "MPLBACKEND": "Agg",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
}

# Host files under /etc that Python and common libraries read.  Everything else under
# /etc (shadow, ssh keys, ssl/private, the service's own configuration) stays hidden.
ETC_FILES: tuple[str, ...] = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/ssl/certs",
    "/etc/ssl/openssl.cnf",
    "/etc/ca-certificates",
    "/etc/fonts",
    "/etc/mime.types",
    "/etc/python3.11",
    "/etc/python3.12",
    "/etc/python3.13",
)

# Paths whose access is reported as a violation: they exist on a typical host but are
# deliberately absent from the sandbox.  (Absence is the enforcement; this list only
# makes the denial visible to the caller.)
HIDDEN_PATHS: tuple[str, ...] = (
    "/root",
    "/home",
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/sudoers",
    "/etc/ssh",
    "/etc/ssl/private",
    "/var",
    "/srv",
    "/opt",
    "/mnt",
    "/media",
    "/run",
    "/boot",
    "/sys",
    "/work",
)

WORKSPACE = "/workspace"
SANDBOX_UID = 1000
SANDBOX_GID = 1000
SUPPORT_MOUNT = "/.sandbox"


@dataclass(frozen=True)
class Limits:
    """Resource limits of one execution; every field is enforced by the kernel."""

    timeout_ms: int = 10_000
    memory_bytes: int = 1024 * MIB
    max_processes: int = 64
    max_file_bytes: int = 64 * MIB
    max_open_files: int = 256
    workspace_bytes: int = 128 * MIB
    tmp_bytes: int = 64 * MIB
    output_bytes: int = 1 * MIB

    def rlimits(self) -> dict[str, int]:
        """The rlimits the stub applies to the user's process, in the job's wire names."""
        return {
            "memoryBytes": self.memory_bytes,
            "maxProcesses": self.max_processes,
            "maxFileBytes": self.max_file_bytes,
            "maxOpenFiles": self.max_open_files,
            # A CPU-time backstop one second past the wall clock: a busy loop that somehow
            # outlived the supervisor's kill would still be stopped by the kernel.
            "cpuSeconds": self.timeout_ms // 1000 + 2,
        }


@dataclass(frozen=True)
class Layout:
    """What the sandbox can see of the host, all read-only."""

    support_dir: str
    """Host directory from support.prepare_support_dir: sandbox code, /etc, placeholders."""
    python: str = "/usr/bin/python3"
    ro_paths: tuple[str, ...] = ("/usr",)
    extra_ro_paths: tuple[str, ...] = field(default=())
    """More read-only paths, each mounted at the same place (e.g. a Python environment)."""
    preload: tuple[str, ...] = field(default=())
    """Modules imported while the sandbox warms up, so the code's imports of them are free."""
