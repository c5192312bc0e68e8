"""The runner package itself, as the runner image runs it, in a pod with the documented
securityContext: its full bubblewrap command line (seccomp filter, --disable-userns, the
prepared /etc, the read-only Python environment) works there unchanged."""

from __future__ import annotations

import json

import pytest
from kubernetes import client
from runner.contract import HarvestLimits, Job, Outcome, RunLimits
from runner.wire import decode_result, encode_job

from tests.e2e.kube import (
    create_pod,
    logs,
    pod,
    sandbox_security_context,
    terminated_exit_code,
    wait_for_phase,
)

pytestmark = pytest.mark.e2e

CODE = """
import os, socket, json
import numpy
open("result.txt", "w").write(str(numpy.arange(4).sum()))
print(json.dumps({"uid": os.getuid(), "interfaces": [n for _, n in socket.if_nameindex()],
                  "home": os.path.exists("/home"), "token": "AUTH_TOKEN" in os.environ}))
"""

# `python -m runner` reads its job on stdin; a pod gives it in its environment.
ENTRY = ["/bin/sh", "-c", 'printf %s "$JOB" | exec /usr/bin/python3 -m runner']


@pytest.mark.timeout(150)
def test_the_runner_runs_a_job_in_a_pod(core: client.CoreV1Api, namespace: str) -> None:
    job = Job(
        execution_id="ex-e2e",
        code=CODE,
        limits=RunLimits(timeout_ms=20_000),
        harvest=HarvestLimits(),
    )
    manifest = pod("runner", ENTRY, host_users=False, security_context=sandbox_security_context())
    manifest["spec"]["containers"][0]["env"] = [{"name": "JOB", "value": encode_job(job).decode()}]
    name = create_pod(core, namespace, manifest)
    done = wait_for_phase(core, namespace, name, {"Succeeded", "Failed"}, timeout=120)
    out = logs(core, namespace, name)
    assert terminated_exit_code(done) == 0, out
    outcome = decode_result(out.strip().splitlines()[-1].encode(), job)
    assert isinstance(outcome, Outcome), outcome
    assert outcome.exit_code == 0, outcome.stderr
    seen = json.loads(outcome.stdout)
    assert seen == {"uid": 1000, "interfaces": ["lo"], "home": False, "token": False}
    assert [(f.path, f.content) for f in outcome.harvested.files] == [("result.txt", b"6")]
    assert outcome.denials == ()
