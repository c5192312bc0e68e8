"""The runner pod and the replica lease as data: every isolation setting, checked here."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from controller.kubernetes.backend import pod_spec
from controller.kubernetes.manifests import (
    LABEL_OWNER,
    Owner,
    execution_label,
    new_pod_name,
    replica_lease,
    runner_pod,
)
from controller.pod_scheduling import PodScheduling
from tests.inprocess import settings

OWNER = Owner(replica="controller-7d9f-abcde", lease_name="sandbox-controller-x", lease_uid="u-1")
TOKEN = "a-secret-token-of-the-pod"


def pod(tmp_path: Path, **overrides: object) -> dict:  # type: ignore[type-arg]
    spec = pod_spec(settings(tmp_path, backend="kubernetes", **overrides))
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    return runner_pod(spec, new_pod_name(), digest, OWNER)


def test_the_pod_gets_nothing_of_the_cluster(tmp_path: Path) -> None:
    spec = pod(tmp_path)["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    assert spec["hostUsers"] is False
    assert spec["restartPolicy"] == "Never"
    assert "serviceAccountName" not in spec
    assert "hostNetwork" not in spec and "hostPID" not in spec and "hostIPC" not in spec
    assert all("hostPath" not in v for v in spec["volumes"])


def test_the_runner_is_unprivileged_under_the_runner_seccomp_profile(tmp_path: Path) -> None:
    spec = pod(tmp_path)["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert spec["securityContext"]["seccompProfile"] == {
        "type": "Localhost",
        "localhostProfile": "sandbox-controller/runner-seccomp.json",
    }
    (container,) = spec["containers"]
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["readOnlyRootFilesystem"] is True
    assert context["procMount"] == "Unmasked"  # only with hostUsers: false, for bwrap --proc
    assert "privileged" not in context


def test_under_gvisor_the_pod_has_no_user_namespace_and_its_own_proc(tmp_path: Path) -> None:
    gvisor = PodScheduling(runtimeClassName="gvisor")
    spec = pod(tmp_path, runner_pod_scheduling=gvisor, runner_user_namespace=False)["spec"]
    (container,) = spec["containers"]
    assert "hostUsers" not in spec and "procMount" not in container["securityContext"]
    assert spec["runtimeClassName"] == "gvisor"
    # Everything else is as locked down as ever.
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert spec["automountServiceAccountToken"] is False
    with pytest.raises(ValidationError, match="RUNNER_USER_NAMESPACE=false needs a runtimeClass"):
        pod(tmp_path, runner_user_namespace=False)


def test_the_whole_execution_is_bounded(tmp_path: Path) -> None:
    spec = pod(tmp_path, memory_limit_mb=512, workspace_size_mb=100, tmp_size_mb=50)["spec"]
    (container,) = spec["containers"]
    limits, requests = container["resources"]["limits"], container["resources"]["requests"]
    # The whole execution (every process, its in-memory workspace, /tmp and /dev/shm
    # together, as a local cgroup), and the runner beside it.
    assert limits["memory"] == f"{512 + 128}Mi"
    assert set(limits) == set(requests) == {"cpu", "memory", "ephemeral-storage"}
    assert spec["activeDeadlineSeconds"] > 0
    command = container["command"]
    assert command[command.index("--workspace-bytes") + 1] == str(100 << 20)
    assert command[command.index("--tmp-bytes") + 1] == str(50 << 20)
    explicit = pod(tmp_path, runner_memory_limit_mb=3000)["spec"]["containers"][0]
    assert explicit["resources"]["limits"]["memory"] == "3000Mi"


def test_the_pod_carries_only_a_digest_of_its_token(tmp_path: Path) -> None:
    manifest = pod(tmp_path)
    text = repr(manifest)
    assert TOKEN not in text
    (container,) = manifest["spec"]["containers"]
    assert container["env"] == [
        {"name": "RUNNER_TOKEN_SHA256", "value": hashlib.sha256(TOKEN.encode()).hexdigest()}
    ]


def test_names_are_generated_and_owners_are_labels_and_references(tmp_path: Path) -> None:
    first, second = pod(tmp_path), pod(tmp_path)
    name = first["metadata"]["name"]
    assert re.fullmatch(r"sbx-[0-9a-f]{16}", name)
    assert name != second["metadata"]["name"]
    assert first["metadata"]["labels"][LABEL_OWNER] == OWNER.replica
    (reference,) = first["metadata"]["ownerReferences"]
    assert reference["kind"] == "Lease" and reference["uid"] == OWNER.lease_uid


def test_the_lease_a_replica_renews() -> None:
    lease = replica_lease("r1", "r1", 15, datetime(2026, 12, 2, 5, 0, 0, 123456, tzinfo=UTC))
    assert lease["spec"] == {
        "holderIdentity": "r1",
        "leaseDurationSeconds": 15,
        "renewTime": "2026-12-02T05:00:00.123456Z",
    }
    assert lease["metadata"]["labels"][LABEL_OWNER] == "r1"


def test_a_claimed_pod_is_labelled_with_its_execution_and_the_callers_key_name() -> None:
    labels = execution_label("ex-1", "team-a")["metadata"]["labels"]
    assert labels == {
        "sandbox-controller.dev/execution": "ex-1",
        "sandbox-controller.dev/key": "team-a",
    }
