"""The runner namespace admits runner pods only, whoever asks: the API server enforces the
chart's Pod Security level (baseline) and its ValidatingAdmissionPolicy, for the
controller's own service account as for an administrator (the integration tier checks
the policy rule by rule against the controller's pod builder)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.chart import CHART, PINNED, one, render
from tests.e2e.conftest import Cluster
from tests.e2e.kube import delete_ignoring_absent, runner_shaped
from tests.e2e.release import RELEASE_NAMESPACE, SANDBOX_NAMESPACE, Ingress, helm_upgrade
from tests.support import wait_for

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


PINNED_POLICY = "e2e-pinned-runner-pods"


@pytest.fixture
def pinned_policy(cluster: Cluster, namespace: str) -> Iterator[str]:
    """The chart's policy rendered for runner pods pinned to a node pool, a RuntimeClass
    and a PriorityClass (helm/README.md's example), bound to ``namespace``: the API
    server compiles the rules those values add and enforces them."""
    rendered = render(*PINNED, files=(CHART / "local-values.yaml",))
    policy = one(rendered, "ValidatingAdmissionPolicy")
    binding = one(rendered, "ValidatingAdmissionPolicyBinding")
    policy["metadata"] = {"name": PINNED_POLICY}
    binding["metadata"] = {"name": PINNED_POLICY}
    binding["spec"]["policyName"] = PINNED_POLICY
    binding["spec"]["matchResources"]["namespaceSelector"]["matchLabels"] = {
        "kubernetes.io/metadata.name": namespace
    }
    admission = client.AdmissionregistrationV1Api(cluster.api)
    scheduling = client.SchedulingV1Api(cluster.api)
    # The classes the pinned pods name must exist: the API server's own admission
    # refuses a pod whose RuntimeClass or PriorityClass does not (the cluster has the
    # RuntimeClass gvisor: tests/cluster/manifests/gvisor.yaml).
    deletions = (
        lambda: admission.delete_validating_admission_policy_binding(PINNED_POLICY),
        lambda: admission.delete_validating_admission_policy(PINNED_POLICY),
        lambda: scheduling.delete_priority_class("sandbox-low"),
        lambda: scheduling.delete_priority_class("sandbox-high"),
    )
    for delete in deletions:  # what an interrupted run may have left
        delete_ignoring_absent(delete)
    scheduling.create_priority_class({"metadata": {"name": "sandbox-low"}, "value": 0})
    scheduling.create_priority_class({"metadata": {"name": "sandbox-high"}, "value": 1000})
    admission.create_validating_admission_policy(policy)
    admission.create_validating_admission_policy_binding(binding)
    try:
        yield namespace
    finally:
        for delete in deletions:
            delete_ignoring_absent(delete)


def pinned(name: str) -> dict[str, Any]:
    """A runner-shaped pod with the placement the pinned chart's controller gives."""
    manifest = runner_shaped(name)
    manifest["spec"].update(
        nodeSelector={"pool": "sandbox", "sandbox-controller.dev/untrusted": "yes"},
        tolerations=[
            {"key": "pool", "operator": "Equal", "value": "sandbox", "effect": "NoSchedule"},
            {"key": "sandbox-controller.dev/evict", "operator": "Exists",
             "effect": "NoExecute", "tolerationSeconds": 30},
        ],
        affinity={
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [
                            {"key": "zone", "operator": "In", "values": ["a", "b"]}
                        ]}
                    ]
                }
            },
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 50,
                     "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname"}}
                ]
            },
        },
        runtimeClassName="gvisor",
        priorityClassName="sandbox-low",
        imagePullSecrets=[{"name": "regcred"}],
    )  # fmt: skip
    return manifest


def test_a_pinned_policy_compiles_admits_its_placement_and_refuses_any_other(
    pinned_policy: str, core: client.CoreV1Api
) -> None:
    # The binding takes effect once the API server has loaded the policy: until then a
    # widened pod would be admitted, so wait for the first refusal, then check the rest.
    def refuses_another_pool() -> bool:
        other = pinned("e2e-other-pool")
        other["spec"]["nodeSelector"]["pool"] = "general"
        try:
            core.create_namespaced_pod(pinned_policy, other, dry_run="All")
        except ApiException as exc:
            assert PINNED_POLICY in str(exc.body), exc.body
            return True
        return False

    wait_for(refuses_another_pool, timeout_s=60, what="the pinned policy", interval_s=0.5)
    core.create_namespaced_pod(pinned_policy, pinned("e2e-pinned"), dry_run="All")
    for widen in (
        lambda spec: spec.pop("runtimeClassName"),
        lambda spec: spec["tolerations"].append({"operator": "Exists"}),
        lambda spec: spec["nodeSelector"].pop("pool"),
        lambda spec: spec["nodeSelector"].update({"kubernetes.io/hostname": "localhost"}),
        lambda spec: spec.update(priorityClassName="sandbox-high"),
        lambda spec: spec["imagePullSecrets"].append({"name": "other"}),
        lambda spec: spec["affinity"].pop("podAntiAffinity"),
        lambda spec: spec["affinity"]["podAntiAffinity"][
            "preferredDuringSchedulingIgnoredDuringExecution"
        ][0].update(weight=100),
    ):
        manifest = pinned("e2e-widened")
        widen(manifest["spec"])
        with pytest.raises(ApiException) as refusal:
            core.create_namespaced_pod(pinned_policy, manifest, dry_run="All")
        assert PINNED_POLICY in str(refusal.value.body), refusal.value.body


def test_no_user_namespace_is_for_gvisors_runtime_class_only(
    release: Ingress, cluster: Cluster
) -> None:
    # Where the chart can read the RuntimeClass (an install or upgrade against the
    # cluster), it refuses runner pods without a user namespace on the node's kernel.
    node = client.NodeV1Api(cluster.api)
    delete_ignoring_absent(lambda: node.delete_runtime_class("e2e-runc"))
    node.create_runtime_class({"metadata": {"name": "e2e-runc"}, "handler": "runc"})

    def upgrade(runtime_class: str) -> tuple[int, str]:
        done = helm_upgrade(
            f"runner.runtimeClassName={runtime_class}",
            "runner.userNamespace=false",
            how=("--dry-run=server",),
        )
        return done.returncode, done.stderr

    try:
        returncode, stderr = upgrade("e2e-runc")
        assert returncode != 0 and "RuntimeClass e2e-runc runs pods with runc" in stderr
        returncode, stderr = upgrade("gvisor")  # the cluster's gVisor (tests/cluster)
        assert returncode == 0, stderr
    finally:
        delete_ignoring_absent(lambda: node.delete_runtime_class("e2e-runc"))
