"""Small helpers for the e2e tier: pod manifests as plain dicts, and waits with deadlines.

The manifests here are the platform's own proofs (tests/cluster/README.md), not the
product's pod builders; they show which pod settings the cluster accepts and enforces.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.support import wait_for

RUNNER_IMAGE = "localhost/sandbox-runner:local"
SECCOMP_PROFILE = "sandbox-controller/runner-seccomp.json"
"""The Localhost profile, relative to kubelet's seccomp directory (up.sh installs it)."""


def sandbox_security_context() -> dict[str, Any]:
    """The least-privileged container securityContext under which bwrap works.

    Goes with ``hostUsers: False`` on the pod (procMount Unmasked requires it).
    """
    return {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "procMount": "Unmasked",
        "seccompProfile": {"type": "Localhost", "localhostProfile": SECCOMP_PROFILE},
    }


def pod(
    name: str,
    command: list[str],
    *,
    labels: dict[str, str] | None = None,
    host_users: bool | None = False,
    security_context: dict[str, Any] | None = None,
    restart_policy: str = "Never",
    ports: tuple[int, ...] = (),
) -> dict[str, Any]:
    """A one-container pod from the runner image, with its command overridden."""
    container: dict[str, Any] = {
        "name": "main",
        "image": RUNNER_IMAGE,
        "imagePullPolicy": "Never",
        "command": command,
        "securityContext": security_context
        or {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}},
    }
    if ports:
        container["ports"] = [{"containerPort": p} for p in ports]
    spec: dict[str, Any] = {
        "restartPolicy": restart_policy,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 0,
        "containers": [container],
    }
    if host_users is not None:
        spec["hostUsers"] = host_users
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": spec,
    }


def runner_shaped(
    name: str, command: tuple[str, ...] = ("/bin/true",), labels: dict[str, str] | None = None
) -> dict[str, Any]:
    """A pod of the runner pod's shape (controller/kubernetes/manifests.py), the only kind
    the runner namespace admits (helm/templates/runner-pod-policy.yaml), running
    ``command``."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "restartPolicy": "Never",
            "activeDeadlineSeconds": 300,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "hostUsers": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "runAsGroup": 10001,
                "seccompProfile": {"type": "Localhost", "localhostProfile": SECCOMP_PROFILE},
            },
            "containers": [
                {
                    "name": "main",
                    "image": RUNNER_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": list(command),
                    "resources": {"limits": {"cpu": "200m", "memory": "128Mi"}},
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                        "readOnlyRootFilesystem": True,
                        "procMount": "Unmasked",
                    },
                }
            ],
            "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}],
        },
    }


def create_pod(core: client.CoreV1Api, namespace: str, manifest: dict[str, Any]) -> str:
    core.create_namespaced_pod(namespace, manifest)
    return str(manifest["metadata"]["name"])


def wait_for_phase(
    core: client.CoreV1Api, namespace: str, name: str, phases: set[str], timeout: float
) -> client.V1Pod:
    """Waits until the pod is in one of ``phases``; fails early if it can never get there."""

    def probe() -> client.V1Pod | None:
        pod = core.read_namespaced_pod(name, namespace)
        phase = pod.status.phase
        if phase in phases:
            return pod
        if phase in {"Succeeded", "Failed"}:
            raise AssertionError(f"pod {name} ended {phase}, expected {sorted(phases)}")
        for status in pod.status.container_statuses or []:
            waiting = status.state.waiting
            if waiting and waiting.reason in {
                "ErrImageNeverPull",
                "CreateContainerError",
                "CreateContainerConfigError",
                "InvalidImageName",
                "CrashLoopBackOff",
            }:
                raise AssertionError(f"pod {name}: {waiting.reason}: {waiting.message}")
        return None

    return wait_for(
        probe,
        timeout_s=timeout,
        what=f"pod {namespace}/{name} to be {sorted(phases)}",
        interval_s=0.5,
    )


def logs(core: client.CoreV1Api, namespace: str, name: str) -> str:
    return str(core.read_namespaced_pod_log(name, namespace, container="main"))


def terminated_exit_code(pod: client.V1Pod) -> int | None:
    for status in pod.status.container_statuses or []:
        if status.state.terminated is not None:
            return int(status.state.terminated.exit_code)
    return None


def delete_ignoring_absent(delete: Callable[[], object]) -> None:
    """Deletes, treating 404 as done."""
    try:
        delete()
    except ApiException as exc:
        if exc.status != 404:
            raise


class SessionResources:
    """One kind of session resource (BrowserSessions, CodeContexts) in its namespace,
    and the pods that serve them, as a test reads them."""

    def __init__(self, api: client.ApiClient, namespace: str, plural: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.namespace, self.plural = namespace, plural

    def get(self, name: str) -> dict[str, Any] | None:
        """The resource, or None once it is gone."""
        try:
            body: dict[str, Any] = self.custom.get_namespaced_custom_object(
                "sandbox-controller.dev", "v1", self.namespace, self.plural, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return body

    def pod_of(self, name: str) -> str:
        body = self.get(name)
        assert body is not None
        return str(body["status"]["pod"])

    def pod_gone(self, pod_name: str) -> bool:
        """Deleted, or being deleted and no longer running."""
        try:
            pod = self.core.read_namespaced_pod(pod_name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return pod.metadata.deletion_timestamp is not None and pod.status.phase != "Running"

    def secret_exists(self, name: str) -> bool:
        try:
            self.core.read_namespaced_secret(name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True
