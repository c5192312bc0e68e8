"""The whole command that starts one sandbox: layout, bwrap argv, seccomp program, launcher.

The service's local backend and ``python -m runner`` (the runner image) build it the
same way, here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from runner.bwrap import bwrap_argv, launcher_argv, probe_host
from runner.policy import Layout, Limits
from runner.seccomp import filter_program
from runner.supervisor import Sandbox
from runner.support import python_env_root

STATUS_FD = "@STATUS_FD@"
SECCOMP_FD = "@SECCOMP_FD@"


@dataclass(frozen=True)
class SandboxCommand:
    argv: list[str]
    fd_data: dict[str, bytes]
    """What bubblewrap reads from descriptors (the seccomp program), by placeholder."""
    visible_paths: tuple[str, ...]
    """Host paths mounted on purpose: not reported as hidden when the code reads them."""

    @property
    def seccomp(self) -> bool:
        return SECCOMP_FD in self.fd_data

    def start(self) -> Sandbox:
        """Start one sandbox now (from the event loop's thread)."""
        return Sandbox(self.argv, status_fd_placeholder=STATUS_FD, fd_data=self.fd_data)


def sandbox_command(
    support_dir: str,
    python: str,
    limits: Limits,
    *,
    extra_ro_paths: tuple[str, ...] = (),
    preload: tuple[str, ...] = (),
    host_ids: tuple[int, int] | None = None,
) -> SandboxCommand:
    """The command for sandboxes running ``python`` (its virtual environment mounted too).

    ``host_ids``: the unprivileged uid and gid to launch bwrap as; used only when this
    process is root (a sandbox is never host root).
    """
    env_root = python_env_root(python)
    visible = (*extra_ro_paths, *([env_root] if env_root else []))
    layout = Layout(support_dir=support_dir, python=python, extra_ro_paths=visible, preload=preload)
    program = filter_program()
    argv = bwrap_argv(
        layout, limits, probe_host(layout), STATUS_FD, seccomp_fd=SECCOMP_FD if program else None
    )
    if host_ids is not None and os.geteuid() == 0:
        argv = launcher_argv(argv, uid=host_ids[0], gid=host_ids[1])
    return SandboxCommand(argv, {SECCOMP_FD: program} if program else {}, visible)
