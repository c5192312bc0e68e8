"""The runner namespace admits runner pods only, whoever asks: the API server enforces the
chart's Pod Security level (baseline) and its ValidatingAdmissionPolicy, for the
controller's own service account as for an administrator (the integration tier checks
the policy rule by rule against the controller's pod builder)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.e2e.conftest import Cluster
from tests.e2e.kube import RUNNER_IMAGE, SECCOMP_PROFILE
from tests.e2e.release import RELEASE_NAMESPACE, SANDBOX_NAMESPACE, Ingress

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

CONTROLLER_ACCOUNT = f"system:serviceaccount:{RELEASE_NAMESPACE}:sandbox-sandbox-controller"
POLICY = "sandbox-sandbox-controller-runner-pods"


def runner_shaped(name: str) -> dict[str, Any]:
    """A pod of the runner pod's shape (controller/kubernetes/manifests.py), which the
    namespace admits; each test widens one thing of it."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "hostUsers": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "runAsGroup": 10001,
                "seccompProfile": {"type": "Localhost", "localhostProfile": SECCOMP_PROFILE},
            },
            "containers": [
                {
                    "name": "runner",
                    "image": RUNNER_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["/bin/true"],
                    "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}},
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


def as_controller(cluster: Cluster) -> client.CoreV1Api:
    """The API as the controller's service account (impersonated by the administrator)."""
    api = config.new_client_from_config(config_file=cluster.kubeconfig)
    api.set_default_header("Impersonate-User", CONTROLLER_ACCOUNT)
    return client.CoreV1Api(api)


def refused(api: client.CoreV1Api, manifest: dict[str, Any]) -> str:
    """The API server's refusal of ``manifest`` in the runner namespace."""
    with pytest.raises(ApiException) as refusal:
        api.create_namespaced_pod(SANDBOX_NAMESPACE, manifest, dry_run="All")
    assert refusal.value.status in (403, 422), refusal.value
    return str(refusal.value.body)


def test_a_pod_of_the_runners_shape_is_admitted(
    release: Ingress, cluster: Cluster, core: client.CoreV1Api
) -> None:
    for api in (core, as_controller(cluster)):
        api.create_namespaced_pod(SANDBOX_NAMESPACE, runner_shaped("e2e-shape"), dry_run="All")


@pytest.mark.parametrize("who", ["administrator", "controller"])
def test_anything_else_is_refused_whoever_asks(
    release: Ingress, cluster: Cluster, core: client.CoreV1Api, who: str
) -> None:
    api = core if who == "administrator" else as_controller(cluster)
    privileged = runner_shaped("e2e-privileged")
    privileged["spec"]["containers"][0]["securityContext"]["privileged"] = True
    assert "PodSecurity" in refused(api, privileged)  # baseline, before the policy
    other_image = runner_shaped("e2e-image")
    other_image["spec"]["containers"][0]["image"] = "docker.io/library/busybox:latest"
    assert POLICY in refused(api, other_image)
    for widen in (
        lambda spec: spec.update(hostUsers=True),
        lambda spec: spec.update(automountServiceAccountToken=True),
        lambda spec: spec["volumes"].append({"name": "s", "secret": {"secretName": "x"}}),
        lambda spec: spec["securityContext"].update(runAsUser=0, runAsNonRoot=False),
        lambda spec: spec["containers"][0]["securityContext"].update(readOnlyRootFilesystem=False),
    ):
        pod = copy.deepcopy(runner_shaped("e2e-widened"))
        widen(pod["spec"])
        assert POLICY in refused(api, pod) or "PodSecurity" in refused(api, pod)
