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
from tests.e2e.kube import runner_shaped
from tests.e2e.release import RELEASE_NAMESPACE, SANDBOX_NAMESPACE, Ingress

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

CONTROLLER_ACCOUNT = f"system:serviceaccount:{RELEASE_NAMESPACE}:sandbox-sandbox-controller"
POLICY = "sandbox-sandbox-controller-runner-pods"


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


def share_host_users(spec: dict[str, Any]) -> None:
    spec["hostUsers"] = True
    # (procMount Unmasked needs a user namespace: without one it is not a valid pod)
    del spec["containers"][0]["securityContext"]["procMount"]


@pytest.mark.parametrize("who", ["administrator", "controller"])
def test_anything_else_is_refused_whoever_asks(
    release: Ingress, cluster: Cluster, core: client.CoreV1Api, who: str
) -> None:
    api = core if who == "administrator" else as_controller(cluster)
    # (privileged itself never gets this far: the API server refuses it to everyone)
    host_mount = runner_shaped("e2e-host-mount")
    host_mount["spec"]["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    assert "PodSecurity" in refused(api, host_mount)  # baseline, before the policy
    other_image = runner_shaped("e2e-image")
    other_image["spec"]["containers"][0]["image"] = "docker.io/library/busybox:latest"
    assert POLICY in refused(api, other_image)
    for widen in (
        share_host_users,
        lambda spec: spec.update(automountServiceAccountToken=True),
        lambda spec: spec["volumes"].append({"name": "s", "secret": {"secretName": "x"}}),
        lambda spec: spec["securityContext"].update(runAsUser=0, runAsNonRoot=False),
        lambda spec: spec["containers"][0]["securityContext"].update(readOnlyRootFilesystem=False),
    ):
        pod = copy.deepcopy(runner_shaped("e2e-widened"))
        widen(pod["spec"])
        refusal = refused(api, pod)
        assert POLICY in refusal or "PodSecurity" in refusal
