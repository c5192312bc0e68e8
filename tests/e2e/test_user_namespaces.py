"""Proof 4: with ``hostUsers: false`` the pod's root is an unprivileged uid on the host."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from kubernetes import client

from tests.e2e.conftest import Cluster
from tests.e2e.kube import create_pod, logs, pod, wait_for_phase
from tests.support import wait_for

pytestmark = pytest.mark.e2e

# Prints the pod's own view, then stays up so the host side can be looked at.
SCRIPT = """
import os, sys, time
print("uid", os.getuid(), "euid", os.geteuid(), flush=True)
print("uid_map", *open("/proc/self/uid_map").read().split(), flush=True)
print("gid_map", *open("/proc/self/gid_map").read().split(), flush=True)
time.sleep(600)
"""


def _uid_map(text: str, key: str) -> tuple[int, int, int]:
    for line in text.splitlines():
        if line.startswith(key + " "):
            inside, outside, count = (int(field) for field in line.split()[1:])
            return inside, outside, count
    raise AssertionError(f"no {key} line in {text!r}")


def _host_uid_of_process_with(marker: str) -> int | None:
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker.encode() not in (proc / "cmdline").read_bytes():
                continue
            status = (proc / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    return None


@pytest.mark.timeout(120)
def test_host_users_false_maps_pod_root_to_an_unprivileged_host_uid(
    cluster: Cluster, core: client.CoreV1Api, namespace: str
) -> None:
    marker = f"userns-proof-{namespace}"
    root = {
        "runAsUser": 0,
        "runAsGroup": 0,
        "runAsNonRoot": False,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    manifest = pod(
        "userns",
        ["/usr/bin/python3", "-c", SCRIPT, marker],
        host_users=False,
        security_context=root,
    )
    name = create_pod(core, namespace, manifest)
    wait_for_phase(core, namespace, name, {"Running"}, timeout=90)

    def report() -> str | None:
        text = logs(core, namespace, name)
        return text if "gid_map" in text else None

    text = wait_for(report, timeout_s=30, what="the pod's uid report", interval_s=0.5)

    assert "uid 0 euid 0" in text, "root inside the pod"
    inside, outside, count = _uid_map(text, "uid_map")
    assert inside == 0
    assert outside >= 65536, "container root is mapped to a high, unprivileged host uid"
    assert count == 65536
    g_inside, g_outside, _ = _uid_map(text, "gid_map")
    assert (g_inside, g_outside) == (0, outside)

    if cluster.local and os.geteuid() == 0:
        # The kernel's own answer from outside: the same process, seen from the host.
        host_uid = wait_for(
            lambda: _host_uid_of_process_with(marker),
            timeout_s=10,
            what="the pod's process on the host",
            interval_s=0.5,
        )
        assert host_uid == outside
