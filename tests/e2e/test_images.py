"""Proof 1: a pod runs from an image built here (no registry) and its logs come back
through the API server (apiserver -> kubelet -> containerd's log files)."""

from __future__ import annotations

import pytest
from kubernetes import client

from tests.e2e.kube import RUNNER_IMAGE, create_pod, logs, pod, terminated_exit_code, wait_for_phase

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(120)
def test_runner_image_pod_runs_and_its_logs_are_read_through_the_api(
    core: client.CoreV1Api, namespace: str
) -> None:
    script = (
        "import os, platform, sys\n"
        "print('runner-image-ok', platform.python_version(), os.getuid(), flush=True)\n"
        "print('bwrap present:', os.access('/usr/bin/bwrap', os.X_OK), file=sys.stderr)\n"
    )
    name = create_pod(core, namespace, pod("hello", ["/usr/bin/python3", "-c", script]))

    done = wait_for_phase(core, namespace, name, {"Succeeded"}, timeout=90)

    assert terminated_exit_code(done) == 0
    status = done.status.container_statuses[0]
    assert status.image.endswith(RUNNER_IMAGE.split("/", 1)[1])
    assert status.image_id, "containerd reports the image's digest"
    out = logs(core, namespace, name).splitlines()
    # stdout and stderr are merged in the log in no guaranteed order: find each line.
    hello = [line for line in out if line.startswith("runner-image-ok ")]
    assert len(hello) == 1, out
    assert hello[0].startswith("runner-image-ok 3.11."), out  # bookworm's python3
    assert hello[0].endswith(" 10001"), "runs as the image's non-root user"
    assert "bwrap present: True" in out
