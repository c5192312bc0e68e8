"""Browser sessions' objects as pure builders: the BrowserSession resource, pods, Secrets.

A browser pod runs one browser agent (browser-image) for one session.  It is locked
down like a runner pod where Chromium allows it: its own user namespace (``hostUsers:
false``), non-root, no capability, no privilege escalation, a read-only root
filesystem, no service-account token, no Service environment variables, limits for
CPU, memory and ephemeral storage.  Chromium keeps its own sandbox: it needs to create
user namespaces, which the runner's Localhost seccomp profile allows (the runtime's
default profile refuses them without CAP_SYS_ADMIN).  The pod's spec carries only the
SHA-256 of the session's token (session_pods: the Secret, the warm pool's claims).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from controller.kubernetes.manifests import APP, LABEL_KEY, LABEL_MANAGED_BY
from controller.kubernetes.session_pods import (
    API_VERSION,
    http_endpoint,
    pods_selector,
    pool_labels,
)
from controller.pod_scheduling import PodScheduling

PLURAL = "browsersessions"
KIND = "BrowserSession"

BROWSER_COMPONENT = "browser"
BROWSERS_SELECTOR = pods_selector(BROWSER_COMPONENT)

AGENT_PORT = 8080
AGENT_UID = 10002
AGENT_HOME = "/home/agent"
TOKEN_ENV = "AGENT_TOKEN_SHA256"  # noqa: S105 - the variable's name


@dataclass(frozen=True)
class BrowserPodSpec:
    """What every browser pod of a deployment has in common (the operator's settings)."""

    image: str
    pull_policy: str
    seccomp_profile: str
    cpu_request: str
    cpu_limit: str
    memory_mb: int
    ephemeral_storage_mb: int
    chromium_sandbox: bool
    allow_private_networks: bool
    max_age_s: int
    """No pod lives longer: a warm pod's wait plus the longest session's lifetime."""
    scheduling: PodScheduling = field(default_factory=PodScheduling)
    """The node pool, runtime, priority and pull secrets the operator chose."""


def new_pod_name() -> str:
    return "brw-" + secrets.token_hex(8)


def agent_command(spec: BrowserPodSpec) -> list[str]:
    command = [
        "/opt/agent/bin/python",
        "-m",
        "browser_agent",
        "--host",
        "0.0.0.0",  # noqa: S104 - the pod's own address; the NetworkPolicy admits the controller only
        "--port",
        str(AGENT_PORT),
        "--token-sha256-env",
        TOKEN_ENV,
        "--data-dir",
        f"{AGENT_HOME}/session",
        "--executable",
        "/usr/bin/chromium",
    ]
    if not spec.chromium_sandbox:
        command.append("--no-chromium-sandbox")
    if spec.allow_private_networks:
        command.append("--allow-private-networks")
    return command


def browser_pod(
    spec: BrowserPodSpec,
    name: str,
    token_digest: str,
    owner: dict[str, Any],
    session: str | None = None,
) -> dict[str, Any]:
    """A browser pod: warm (owned by the pool) or started for ``session`` (owned by it)."""
    labels = pool_labels(BROWSER_COMPONENT, session)
    scratch_mb = max(spec.ephemeral_storage_mb // 2, 16)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels, "ownerReferences": [owner]},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "hostUsers": False,
            "terminationGracePeriodSeconds": 5,
            "activeDeadlineSeconds": spec.max_age_s,
            **spec.scheduling.pod_fields(),
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": AGENT_UID,
                "runAsGroup": AGENT_UID,
                "seccompProfile": {"type": "Localhost", "localhostProfile": spec.seccomp_profile},
            },
            "containers": [
                {
                    "name": "agent",
                    "image": spec.image,
                    "imagePullPolicy": spec.pull_policy,
                    "command": agent_command(spec),
                    "env": [
                        {"name": TOKEN_ENV, "value": token_digest},
                        {"name": "HOME", "value": AGENT_HOME},
                        {"name": "TMPDIR", "value": AGENT_HOME},
                    ],
                    "ports": [{"name": "agent", "containerPort": AGENT_PORT}],
                    "resources": {
                        "requests": {
                            "cpu": spec.cpu_request,
                            "memory": f"{spec.memory_mb}Mi",
                            "ephemeral-storage": f"{min(spec.ephemeral_storage_mb, 64)}Mi",
                        },
                        "limits": {
                            "cpu": spec.cpu_limit,
                            "memory": f"{spec.memory_mb}Mi",
                            "ephemeral-storage": f"{spec.ephemeral_storage_mb}Mi",
                        },
                    },
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                        "readOnlyRootFilesystem": True,
                    },
                    "volumeMounts": [
                        {"name": "home", "mountPath": AGENT_HOME},
                        {"name": "shm", "mountPath": "/dev/shm"},  # noqa: S108 - the pod's own
                    ],
                }
            ],
            # The profile, cache and temporary files: the session's, gone with the pod.
            "volumes": [
                {"name": "home", "emptyDir": {"sizeLimit": f"{scratch_mb}Mi"}},
                {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
            ],
        },
    }


def agent_endpoint(pod_ip: str) -> str:
    return http_endpoint(pod_ip, AGENT_PORT)


def browser_session(
    name: str,
    device: str,
    idle_timeout_s: int,
    max_lifetime_s: int,
    labels: dict[str, str],
    network: dict[str, Any],
    owner: str,
) -> dict[str, Any]:
    """The BrowserSession a controller creates for the caller whose key is named
    ``owner`` (a label); the caller's own labels stay in the spec, and ``network`` is
    what its browser may reach (browser_agent.protocol.SessionNetwork), passed to the
    agent as it is."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "labels": {LABEL_MANAGED_BY: APP, LABEL_KEY: owner}},
        "spec": {
            "device": device,
            "idleTimeoutS": idle_timeout_s,
            "maxLifetimeS": max_lifetime_s,
            "labels": labels,
            "network": network,
        },
    }
