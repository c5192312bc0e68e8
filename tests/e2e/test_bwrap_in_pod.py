"""Proof 2: bubblewrap with every namespace and a fresh /proc works in a pod under the
least-privileged settings documented in tests/cluster/README.md; and each of the two
relaxations it relies on (the Localhost seccomp profile, procMount Unmasked) is needed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

from tests.e2e.kube import (
    create_pod,
    logs,
    pod,
    sandbox_security_context,
    terminated_exit_code,
    wait_for_phase,
)

pytestmark = pytest.mark.e2e

BWRAP = [
    "/usr/bin/bwrap",
    "--unshare-all",
    "--hostname",
    "sandbox",
    "--die-with-parent",
    "--new-session",
    "--clearenv",
    "--ro-bind",
    "/usr",
    "/usr",
    "--symlink",
    "usr/bin",
    "/bin",
    "--symlink",
    "usr/lib",
    "/lib",
    "--symlink",
    "usr/lib64",
    "/lib64",
    "--symlink",
    "usr/sbin",
    "/sbin",
    "--proc",
    "/proc",
    "--dev",
    "/dev",
    "--tmpfs",
    "/tmp",
    "--",
]

# Runs inside the sandbox and reports what it can see.
INSIDE = """
import json, os, socket
pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
devices = [l.split(":")[0].strip() for l in open("/proc/net/dev").read().splitlines()[2:]]
try:
    open("/usr/escape", "w")
    usr_writable = True
except OSError:
    usr_writable = False
print(json.dumps({
    "pid": os.getpid(), "pids": pids, "hostname": socket.gethostname(),
    "devices": devices, "usr_writable": usr_writable,
    "pid1": open("/proc/1/cmdline").read().split("\\0")[0],
    "tmp_writable": os.access("/tmp", os.W_OK),
}))
"""


def _run(
    core: client.CoreV1Api, namespace: str, name: str, context: dict[str, Any]
) -> tuple[int, str]:
    manifest = pod(
        name, [*BWRAP, "/usr/bin/python3", "-c", INSIDE], host_users=False, security_context=context
    )
    create_pod(core, namespace, manifest)
    done = wait_for_phase(core, namespace, name, {"Succeeded", "Failed"}, timeout=90)
    code = terminated_exit_code(done)
    assert code is not None
    return code, logs(core, namespace, name)


@pytest.mark.timeout(120)
def test_bwrap_with_fresh_proc_runs_under_the_documented_security_context(
    core: client.CoreV1Api, namespace: str
) -> None:
    code, out = _run(core, namespace, "bwrap", sandbox_security_context())

    assert code == 0, out
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["pid1"] == "/usr/bin/bwrap", "a new PID namespace, with its own /proc"
    assert seen["pids"] == [1, seen["pid"]], "only bwrap and the sandboxed process are visible"
    assert seen["hostname"] == "sandbox"
    assert seen["devices"] == ["lo"], "a new network namespace with loopback only"
    assert seen["usr_writable"] is False
    assert seen["tmp_writable"] is True


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("relaxation", "change", "expected_error"),
    [
        (
            "seccomp",
            {"seccompProfile": {"type": "RuntimeDefault"}},
            "No permissions to create new namespace",
        ),
        ("procmount", {"procMount": "Default"}, "Can't mount proc"),
    ],
)
def test_bwrap_fails_without_each_relaxation(
    core: client.CoreV1Api,
    namespace: str,
    relaxation: str,
    change: dict[str, Any],
    expected_error: str,
) -> None:
    code, out = _run(core, namespace, f"bwrap-no-{relaxation}", sandbox_security_context() | change)

    assert code != 0, out
    assert out.startswith("bwrap: "), out
    assert expected_error in out
