"""The whole command that starts one sandbox: layout, bwrap argv, seccomp program, launcher.

The service's local backend and ``python -m runner`` (the runner image) build it the
same way, here.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass

from runner.bwrap import EGRESS_DIR, bwrap_argv, launcher_argv, probe_host
from runner.cgroup import SandboxCgroup
from runner.contract import SandboxLimits
from runner.policy import Layout, sandbox_view
from runner.seccomp import filter_program
from runner.supervisor import Sandbox
from runner.support import prepare_support_dir, python_env_root

READY_TIMEOUT_S = 30.0
"""How long a runner process waits for its sandbox to warm up."""
# What preparing a sandbox can fail with: a missing interpreter, an unwritable directory.
SETUP_ERRORS = (OSError, RuntimeError, subprocess.SubprocessError, ValueError)
STATUS_FD = "@STATUS_FD@"
EVENTS_FD = "@EVENTS_FD@"
SECCOMP_FD = "@SECCOMP_FD@"


@dataclass(frozen=True)
class SandboxCommand:
    argv: list[str]
    """bubblewrap's command line, without the launcher that sets its ids (``start``'s)."""
    fd_data: dict[str, bytes]
    """What bubblewrap reads from descriptors (the seccomp program), by placeholder."""
    mounted: SandboxLimits
    view: dict[str, object]
    """What the stub is told of the policy (runner.policy.sandbox_view)."""
    host_ids: tuple[int, int] | None = None
    """The uid and gid a sandbox is launched as, unless ``start`` is given its own; used
    only when this process is root (a sandbox is never host root)."""

    @property
    def seccomp(self) -> bool:
        return SECCOMP_FD in self.fd_data

    @property
    def egress(self) -> bool:
        """Whether each sandbox needs a directory for its egress socket (``start``'s)."""
        return EGRESS_DIR in self.argv

    def start(
        self,
        cgroup: SandboxCgroup | None = None,
        egress_dir: str | None = None,
        host_ids: tuple[int, int] | None = None,
    ) -> Sandbox:
        """Start one sandbox now (from the event loop's thread), in ``cgroup`` if given,
        with ``egress_dir`` (its own, empty) mounted where its stub finds the proxy, as
        ``host_ids`` (its own uid and gid) or the command's."""
        argv = self.argv
        if self.egress:
            if egress_dir is None:
                raise ValueError("this sandbox command needs an egress directory")
            argv = [egress_dir if a == EGRESS_DIR else a for a in argv]
        ids = host_ids or self.host_ids
        if ids is not None and os.geteuid() == 0:
            argv = launcher_argv(argv, uid=ids[0], gid=ids[1])
        return Sandbox(
            argv,
            status_fd_placeholder=STATUS_FD,
            events_fd_placeholder=EVENTS_FD,
            mounted=self.mounted,
            view=self.view,
            fd_data=self.fd_data,
            cgroup=cgroup,
        )


def sandbox_command(
    support_dir: str,
    python: str,
    mounted: SandboxLimits,
    *,
    extra_ro_paths: tuple[str, ...] = (),
    preload: tuple[str, ...] = (),
    host_ids: tuple[int, int] | None = None,
    egress: bool = False,
) -> SandboxCommand:
    """The command for sandboxes running ``python`` (its virtual environment mounted too).

    ``host_ids``: the unprivileged uid and gid to launch bwrap as, unless a sandbox is
    started with its own (SandboxCommand.start).  ``egress``: each sandbox mounts a
    directory of its own for its egress socket (a domain may be allowed).
    """
    env_root = python_env_root(python)
    visible = (*extra_ro_paths, *([env_root] if env_root else []))
    layout = Layout(
        support_dir=support_dir,
        python=python,
        extra_ro_paths=visible,
        preload=preload,
        egress=egress,
    )
    program = filter_program()
    argv = bwrap_argv(
        layout,
        mounted,
        probe_host(layout),
        STATUS_FD,
        EVENTS_FD,
        seccomp_fd=SECCOMP_FD if program else None,
    )
    return SandboxCommand(
        argv, {SECCOMP_FD: program} if program else {}, mounted, sandbox_view(visible), host_ids
    )


@dataclass(frozen=True)
class RunnerOptions:
    """How a runner process (``python -m runner``) builds its sandboxes."""

    python: str
    host_ids: tuple[int, int]
    preload: tuple[str, ...] = ()
    extra_ro_paths: tuple[str, ...] = ()
    support_dir: str | None = None
    """A support directory prepared ahead (the runner image's, at build time): a pod then
    starts without preparing one, which costs seconds of CPU (compiling the stub, warming
    matplotlib's caches)."""
    egress: bool = False
    """Sandboxes mount an egress directory (a job may reach names: runner.egress)."""

    def prepare(self, mounted: SandboxLimits) -> tuple[SandboxCommand, str | None]:
        """The command for a sandbox mounted with ``mounted``, and the support directory
        made for it, which the caller removes (None when one was prepared ahead)."""
        made = None
        support = self.support_dir
        if support is None:
            support = made = prepare_support_dir(
                tempfile.mkdtemp(prefix="runner-support-"), self.python
            )
        command = sandbox_command(
            support,
            self.python,
            mounted,
            extra_ro_paths=self.extra_ro_paths,
            preload=self.preload,
            host_ids=self.host_ids,
            egress=self.egress,
        )
        return command, made
