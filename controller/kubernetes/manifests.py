"""The objects the controller creates in the sandbox namespace, as pure builders of plain dicts.

A runner pod is as locked down as bubblewrap lets it be (tests/cluster/README.md shows
each relaxation is needed): its own user namespace (``hostUsers: false``), non-root, no
capability, no privilege escalation, a read-only root filesystem, the runner's Localhost
seccomp profile, an unmasked /proc only so that bubblewrap can mount a fresh one for the
sandbox, no service-account token, no Service environment variables, and limits for CPU,
memory and ephemeral storage that bound the whole execution.  It is owned by its
replica's Lease (owner references must stay within a namespace), so the garbage
collector removes the pods of a replica whose lease is gone.

Names are generated; who asked is only ever in labels.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from runner.contract import MAX_TIMEOUT_MS, SandboxLimits

from controller.pod_scheduling import PodScheduling

APP = "sandbox-controller"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_OWNER = "sandbox-controller.dev/replica"
LABEL_EXECUTION = "sandbox-controller.dev/execution"
LABEL_KEY = "sandbox-controller.dev/key"
"""The name of the caller's key (never the key): on runner pods and BrowserSessions."""
RUNNER_COMPONENT = "runner"
LEASE_COMPONENT = "replica-lease"
RUNNER_PORT = 8080
RUNNER_UID = 10001
TOKEN_ENV = "RUNNER_TOKEN_SHA256"  # noqa: S105 - the name of the variable, not a secret
# A pod must also have time to start, and to answer once its job is done.
DEADLINE_MARGIN_S = 120


@dataclass(frozen=True)
class RunnerPodSpec:
    """What every runner pod of a deployment has in common (from the settings)."""

    image: str
    pull_policy: str
    seccomp_profile: str
    mounted: SandboxLimits
    cpu_request: str
    cpu_limit: str
    memory_request_mb: int
    memory_limit_mb: int
    ephemeral_storage_mb: int
    max_idle_s: int
    """A warm pod that got no job this long exits by itself (the pool replaces it sooner)."""
    egress: bool = False
    """Its sandbox mounts an egress directory: a job may reach names (runner.egress)."""
    scheduling: PodScheduling = field(default_factory=PodScheduling)
    """The node pool, runtime, priority and pull secrets the operator chose."""
    user_namespace: bool = True
    """hostUsers: false and an unmasked /proc; off only under a RuntimeClass with a
    kernel of its own (gVisor), which gives no pod user namespaces and a /proc of its
    own that bubblewrap may mount (settings.runner_user_namespace)."""


@dataclass(frozen=True)
class Owner:
    """The replica a runner pod belongs to, through its Lease."""

    replica: str
    lease_name: str
    lease_uid: str


def new_pod_name() -> str:
    return "sbx-" + secrets.token_hex(8)


def owner_selector(replica: str) -> str:
    return f"{LABEL_COMPONENT}={RUNNER_COMPONENT},{LABEL_OWNER}={replica}"


RUNNERS_SELECTOR = f"{LABEL_COMPONENT}={RUNNER_COMPONENT},{LABEL_MANAGED_BY}={APP}"
LEASES_SELECTOR = f"{LABEL_COMPONENT}={LEASE_COMPONENT},{LABEL_MANAGED_BY}={APP}"


def lease_name(replica: str) -> str:
    return f"sandbox-controller-{replica}"[:253]


def replica_lease(replica: str, holder: str, duration_s: int, now: datetime) -> dict[str, Any]:
    """The Lease a replica renews while it lives; its runner pods are owned by it."""
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": lease_name(replica),
            "labels": {
                LABEL_COMPONENT: LEASE_COMPONENT,
                LABEL_MANAGED_BY: APP,
                LABEL_OWNER: replica,
            },
        },
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": duration_s,
            "renewTime": micro_time(now),
        },
    }


def micro_time(moment: datetime) -> str:
    """A MicroTime as the API server writes it: UTC, microseconds, ``Z``."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def runner_pod(spec: RunnerPodSpec, name: str, token_digest: str, owner: Owner) -> dict[str, Any]:
    """One single-use runner pod: it warms a sandbox, takes one job over HTTP, and exits."""
    labels = {LABEL_COMPONENT: RUNNER_COMPONENT, LABEL_MANAGED_BY: APP, LABEL_OWNER: owner.replica}
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "name": owner.lease_name,
        "uid": owner.lease_uid,
        "controller": True,
        "blockOwnerDeletion": False,
    }
    deadline_s = spec.max_idle_s + MAX_TIMEOUT_MS // 1000 + DEADLINE_MARGIN_S
    return serving_pod(spec, name, token_digest, labels, lease, deadline_s)


def serving_pod(
    spec: RunnerPodSpec,
    name: str,
    token_digest: str,
    labels: dict[str, str],
    owner: dict[str, Any],
    deadline_s: int,
    *,
    context: bool = False,
) -> dict[str, Any]:
    """A pod that runs ``python -m runner serve`` (``--context``: one code context), owned
    by ``owner`` and gone ``deadline_s`` after it started, whatever happens."""
    command = [
        "/usr/bin/python3",
        "-m",
        "runner",
        "serve",
        "--port",
        str(RUNNER_PORT),
        "--token-sha256-env",
        TOKEN_ENV,
        "--workspace-bytes",
        str(spec.mounted.workspace_bytes),
        "--tmp-bytes",
        str(spec.mounted.tmp_bytes),
        "--max-idle-s",
        str(spec.max_idle_s),
        *(["--egress"] if spec.egress else []),
        *(["--context"] if context else []),
    ]
    resources = {
        "requests": {
            "cpu": spec.cpu_request,
            "memory": f"{spec.memory_request_mb}Mi",
            "ephemeral-storage": f"{min(spec.ephemeral_storage_mb, 64)}Mi",
        },
        "limits": {
            "cpu": spec.cpu_limit,
            "memory": f"{spec.memory_limit_mb}Mi",
            "ephemeral-storage": f"{spec.ephemeral_storage_mb}Mi",
        },
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels, "ownerReferences": [owner]},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            **({"hostUsers": False} if spec.user_namespace else {}),
            # Nothing to wait for: a pod is deleted when its one job is answered.
            "terminationGracePeriodSeconds": 0,
            "activeDeadlineSeconds": deadline_s,
            **spec.scheduling.pod_fields(),
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": RUNNER_UID,
                "runAsGroup": RUNNER_UID,
                "seccompProfile": {
                    "type": "Localhost",
                    "localhostProfile": spec.seccomp_profile,
                },
            },
            "containers": [
                {
                    "name": "runner",
                    "image": spec.image,
                    "imagePullPolicy": spec.pull_policy,
                    "command": command,
                    "env": [{"name": TOKEN_ENV, "value": token_digest}],
                    "ports": [{"name": "runner", "containerPort": RUNNER_PORT}],
                    "resources": resources,
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                        "readOnlyRootFilesystem": True,
                        # Allowed only with hostUsers: false; bwrap's --proc needs it.
                        **({"procMount": "Unmasked"} if spec.user_namespace else {}),
                    },
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 - the pod's own
                }
            ],
            # The runner's support files (tempfile), on a bounded scratch volume.
            "volumes": [
                {
                    "name": "tmp",
                    "emptyDir": {"sizeLimit": f"{spec.ephemeral_storage_mb // 2}Mi"},
                }
            ],
        },
    }


def execution_label(execution_id: str, caller: str) -> dict[str, Any]:
    """The patch that marks which execution a pod serves, and for which caller's key
    (its name: operators find a pod by either)."""
    return {"metadata": {"labels": {LABEL_EXECUTION: execution_id, LABEL_KEY: caller}}}
