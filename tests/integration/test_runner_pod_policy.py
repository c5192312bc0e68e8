"""The runner namespace's admission rules as data: the chart's Pod Security level and its
ValidatingAdmissionPolicy, evaluated (CEL) against the pod the controller builds and
against every way a compromised controller could try to widen it.  The e2e tier has
the API server enforce the same policy."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import celpy
import pytest
from runner.contract import SandboxLimits

from controller.kubernetes.context_manifests import ContextPodTemplate, context_pod
from controller.kubernetes.manifests import Owner, RunnerPodSpec, runner_pod
from controller.kubernetes.session_pods import owner_reference
from controller.pod_scheduling import PodScheduling
from tests.chart import PINNED, one, refusal, render
from tests.integration.test_chart import CONTROLLER, RUNNERS, env

Pod = dict[str, Any]


@pytest.fixture(scope="module")
def chart() -> list[dict[str, Any]]:
    return render()


@pytest.fixture(scope="module")
def pinned_chart() -> list[dict[str, Any]]:
    return render(*PINNED)


def runner_spec(chart: list[dict[str, Any]]) -> RunnerPodSpec:
    """What the chart's controller makes runner pods with, from the chart's own settings."""
    settings = env(one(chart, "Deployment", name=CONTROLLER))
    return RunnerPodSpec(
        image=settings["RUNNER_IMAGE"],
        pull_policy=settings["RUNNER_IMAGE_PULL_POLICY"],
        seccomp_profile=settings["RUNNER_SECCOMP_PROFILE"],
        mounted=SandboxLimits(),
        cpu_request="100m",
        cpu_limit="1",
        memory_request_mb=128,
        memory_limit_mb=1152,
        ephemeral_storage_mb=256,
        max_idle_s=int(settings["WARM_SANDBOX_MAX_AGE_S"]) + 60,
        scheduling=PodScheduling.model_validate_json(settings["RUNNER_POD_SCHEDULING"]),
        user_namespace=settings["RUNNER_USER_NAMESPACE"] == "true",
    )


def pod_of(chart: list[dict[str, Any]]) -> Pod:
    """The runner pod the chart's controller would build."""
    spec = runner_spec(chart)
    return runner_pod(spec, "sbx-0123456789abcdef", "0" * 64, Owner("replica", "lease", "uid"))


@pytest.fixture(scope="module")
def controller_pod(chart: list[dict[str, Any]]) -> Pod:
    return pod_of(chart)


@pytest.fixture(scope="module")
def pinned_pod(pinned_chart: list[dict[str, Any]]) -> Pod:
    return pod_of(pinned_chart)


CONTROLLER_USER = "system:serviceaccount:sandbox:rel-sandbox-controller"
OPERATOR_USER = "system:serviceaccount:sandbox:rel-sandbox-controller-operator"


def refusals(
    chart: list[dict[str, Any]],
    pod: Pod,
    operation: str = "CREATE",
    user: str = CONTROLLER_USER,
) -> list[str]:
    """The messages of the policy's validations that ``pod`` fails, when created (or
    updated: ``operation``)."""
    policy = one(chart, "ValidatingAdmissionPolicy")
    environment = celpy.Environment()
    activation: dict[str, Any] = {
        "object": celpy.json_to_cel(pod),
        "request": celpy.json_to_cel({"operation": operation, "userInfo": {"username": user}}),
    }
    variables = {}
    for variable in policy["spec"].get("variables", []):
        program = environment.program(environment.compile(variable["expression"]))
        variables[variable["name"]] = program.evaluate(activation)
    activation["variables"] = celpy.celtypes.MapType(
        {celpy.celtypes.StringType(k): v for k, v in variables.items()}
    )
    failed = []
    for validation in policy["spec"]["validations"]:
        program = environment.program(environment.compile(validation["expression"]))
        verdict = program.evaluate(activation)
        # Each rule decides: an evaluation error would refuse too (failurePolicy: Fail),
        # but as a rule's mistake, not its verdict.
        assert isinstance(verdict, celpy.celtypes.BoolType), (validation["message"], verdict)
        if not verdict:
            failed.append(validation["message"])
    return failed


def test_the_runner_namespace_is_held_to_baseline_and_audited_against_restricted(
    chart: list[dict[str, Any]],
) -> None:
    labels = one(chart, "Namespace", name=RUNNERS)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
    assert labels["pod-security.kubernetes.io/audit"] == "restricted"
    binding = one(chart, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert binding["spec"]["matchResources"]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": RUNNERS
    }
    assert one(chart, "ValidatingAdmissionPolicy")["spec"]["failurePolicy"] == "Fail"


def test_the_controllers_own_runner_pod_passes_every_rule(
    chart: list[dict[str, Any]], controller_pod: Pod
) -> None:
    assert refusals(chart, controller_pod) == []
    # As the API server admits it: with the tolerations it gives every pod first.
    defaulted = copy.deepcopy(controller_pod)
    defaulted["spec"]["tolerations"] = [
        {"key": f"node.kubernetes.io/{k}", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 300}
        for k in ("not-ready", "unreachable")
    ]  # fmt: skip
    assert refusals(chart, defaulted) == []
    # Scheduled, then labelled by the controller for its execution: an update of a pod
    # whose node the scheduler has set.
    scheduled = copy.deepcopy(defaulted)
    scheduled["spec"]["nodeName"] = "node-1"
    scheduled["metadata"]["labels"]["sandbox-controller.dev/execution"] = "ex-1"
    assert refusals(chart, scheduled, operation="UPDATE") == []


def mutate(change: Callable[[Pod], object]) -> Callable[[Pod], Pod]:
    def mutated(pod: Pod) -> Pod:
        copied = copy.deepcopy(pod)
        change(copied)
        return copied

    return mutated


def container(pod: Pod) -> dict[str, Any]:
    return pod["spec"]["containers"][0]  # type: ignore[no-any-return]


WIDENINGS = {
    "privileged": mutate(lambda p: container(p)["securityContext"].update(privileged=True)),
    "another image": mutate(lambda p: container(p).update(image="docker.io/library/busybox")),
    "the node's user ids": mutate(lambda p: p["spec"].update(hostUsers=True)),
    "no hostUsers at all": mutate(lambda p: p["spec"].pop("hostUsers")),
    "the node's network": mutate(lambda p: p["spec"].update(hostNetwork=True)),
    "the node's pids": mutate(lambda p: p["spec"].update(hostPID=True)),
    "a service-account token": mutate(lambda p: p["spec"].pop("automountServiceAccountToken")),
    "a hostPath": mutate(
        lambda p: p["spec"]["volumes"].append({"name": "node", "hostPath": {"path": "/"}})
    ),
    "a secret": mutate(
        lambda p: p["spec"]["volumes"].append({"name": "s", "secret": {"secretName": "x"}})
    ),
    "an unbounded emptyDir": mutate(lambda p: p["spec"]["volumes"][0]["emptyDir"].clear()),
    "root": mutate(lambda p: p["spec"]["securityContext"].update(runAsUser=0)),
    "runAsNonRoot off": mutate(lambda p: p["spec"]["securityContext"].update(runAsNonRoot=False)),
    "no seccomp": mutate(lambda p: p["spec"]["securityContext"].pop("seccompProfile")),
    "another seccomp profile": mutate(
        lambda p: p["spec"]["securityContext"].update(seccompProfile={"type": "Unconfined"})
    ),
    "a capability": mutate(
        lambda p: container(p)["securityContext"]["capabilities"].update(add=["SYS_ADMIN"])
    ),
    "capabilities kept": mutate(
        lambda p: container(p)["securityContext"]["capabilities"].update(drop=["NET_RAW"])
    ),
    "privilege escalation": mutate(
        lambda p: container(p)["securityContext"].update(allowPrivilegeEscalation=True)
    ),
    "a writable root": mutate(
        lambda p: container(p)["securityContext"].update(readOnlyRootFilesystem=False)
    ),
    "a container's own user": mutate(lambda p: container(p)["securityContext"].update(runAsUser=0)),
    "a second container": mutate(
        lambda p: p["spec"]["containers"].append(copy.deepcopy(container(p)))
    ),
    "an init container": mutate(
        lambda p: p["spec"].update(initContainers=[copy.deepcopy(container(p))])
    ),
    "a host port": mutate(lambda p: container(p)["ports"][0].update(hostPort=8080)),
    "no memory limit": mutate(lambda p: container(p)["resources"]["limits"].pop("memory")),
    "code through the environment": mutate(
        lambda p: container(p)["env"].append({"name": "PYTHONSTARTUP", "value": "/tmp/x.py"})
    ),
    "a secret in the environment": mutate(
        lambda p: container(p)["env"][0].update(
            value=None, valueFrom={"secretKeyRef": {"name": "s", "key": "k"}}
        )
    ),
    "an environment from a config map": mutate(
        lambda p: container(p).update(envFrom=[{"configMapRef": {"name": "c"}}])
    ),
    "a hook that runs a command": mutate(
        lambda p: container(p).update(lifecycle={"postStart": {"exec": {"command": ["sh"]}}})
    ),
    "a probe that runs a command": mutate(
        lambda p: container(p).update(livenessProbe={"exec": {"command": ["sh"]}})
    ),
    "no deadline": mutate(lambda p: p["spec"].pop("activeDeadlineSeconds")),
    "a deadline of a day": mutate(lambda p: p["spec"].update(activeDeadlineSeconds=86_400)),
    "restarted": mutate(lambda p: p["spec"].update(restartPolicy="Always")),
    "a node of its choosing": mutate(lambda p: p["spec"].update(nodeName="control-plane")),
    "a toleration of the control plane": mutate(
        lambda p: p["spec"].update(tolerations=[{"operator": "Exists"}])
    ),
    "a node selector": mutate(lambda p: p["spec"].update(nodeSelector={"a": "b"})),
    "a runtime class": mutate(lambda p: p["spec"].update(runtimeClassName="unconfined")),
    "an unreachable node tolerated for ever": mutate(
        lambda p: p["spec"].update(
            tolerations=[
                {
                    "key": "node.kubernetes.io/unreachable",
                    "operator": "Exists",
                    "effect": "NoExecute",
                }
            ]
        )
    ),
    "another scheduler": mutate(lambda p: p["spec"].update(schedulerName="my-scheduler")),
    "a scheduling gate": mutate(
        lambda p: p["spec"].update(schedulingGates=[{"name": "example.com/hold"}])
    ),
    "a priority class": mutate(lambda p: p["spec"].update(priorityClassName="system-critical")),
    "an affinity": mutate(lambda p: p["spec"].update(affinity={"nodeAffinity": {}})),
    "a pull secret": mutate(lambda p: p["spec"].update(imagePullSecrets=[{"name": "other"}])),
    "service links": mutate(lambda p: p["spec"].update(enableServiceLinks=True)),
    "its own name servers": mutate(
        lambda p: p["spec"].update(dnsPolicy="None", dnsConfig={"nameservers": ["192.0.2.1"]})
    ),
}


@pytest.mark.parametrize("widening", list(WIDENINGS))
def test_every_widening_of_the_runner_pod_is_refused(
    chart: list[dict[str, Any]], controller_pod: Pod, widening: str
) -> None:
    assert refusals(chart, WIDENINGS[widening](controller_pod)), widening


def test_a_pinned_runner_pod_passes_as_the_controller_and_the_api_server_make_it(
    pinned_chart: list[dict[str, Any]], pinned_pod: Pod
) -> None:
    spec = pinned_pod["spec"]
    assert spec["nodeSelector"] == {"pool": "sandbox", "sandbox-controller.dev/untrusted": "yes"}
    assert spec["runtimeClassName"] == "gvisor"
    assert spec["priorityClassName"] == "sandbox-low"
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert (
        spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0][
            "weight"
        ]
        == 50
    )
    assert refusals(pinned_chart, pinned_pod) == []
    # The API server adds its own tolerations.
    admitted = copy.deepcopy(pinned_pod)
    admitted["spec"]["tolerations"].append(
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 300}
    )  # fmt: skip
    assert refusals(pinned_chart, admitted) == []


PINNED_WIDENINGS = {
    "the pool's label dropped": mutate(lambda p: p["spec"]["nodeSelector"].pop("pool")),
    "a node of its choosing within the pool": mutate(
        lambda p: p["spec"]["nodeSelector"].update({"kubernetes.io/hostname": "victim-node"})
    ),
    "another pool": mutate(lambda p: p["spec"]["nodeSelector"].update(pool="general")),
    "no node selector": mutate(lambda p: p["spec"].pop("nodeSelector")),
    "a toleration of every taint": mutate(
        lambda p: p["spec"]["tolerations"].append({"operator": "Exists"})
    ),
    "the pool's toleration widened to any value": mutate(
        lambda p: (
            p["spec"]["tolerations"][0].pop("value"),
            p["spec"]["tolerations"][0].update(operator="Exists"),
        )
    ),
    "the eviction tolerated for ever": mutate(
        lambda p: p["spec"]["tolerations"][1].pop("tolerationSeconds")
    ),
    "no runtime class": mutate(lambda p: p["spec"].pop("runtimeClassName")),
    "another runtime class": mutate(lambda p: p["spec"].update(runtimeClassName="runc")),
    "another priority class": mutate(
        lambda p: p["spec"].update(priorityClassName="system-cluster-critical")
    ),
    "another pull secret": mutate(lambda p: p["spec"]["imagePullSecrets"].append({"name": "x"})),
    "no affinity": mutate(lambda p: p["spec"].pop("affinity")),
    "another zone": mutate(
        lambda p: p["spec"]["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ]["nodeSelectorTerms"][0]["matchExpressions"][0].update(values=["a", "b", "c"])
    ),
    "beside a chosen pod": mutate(
        lambda p: p["spec"]["affinity"].update(
            podAffinity={
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "labelSelector": {"matchLabels": {"app": "victim"}},
                        "topologyKey": "kubernetes.io/hostname",
                    }
                ]
            }
        )
    ),
}


@pytest.mark.parametrize("widening", list(PINNED_WIDENINGS))
def test_every_widening_of_a_pinned_runner_pod_is_refused(
    pinned_chart: list[dict[str, Any]], pinned_pod: Pod, widening: str
) -> None:
    assert refusals(pinned_chart, PINNED_WIDENINGS[widening](pinned_pod)), widening


GVISOR = ("runner.runtimeClassName=gvisor", "runner.userNamespace=false")
"""Runner pods under gVisor, which gives them a kernel of their own and no user namespace."""


@pytest.fixture(scope="module")
def gvisor_chart() -> list[dict[str, Any]]:
    return render(*GVISOR)


def test_under_gvisor_the_pod_without_a_user_namespace_passes(
    gvisor_chart: list[dict[str, Any]],
) -> None:
    pod = pod_of(gvisor_chart)
    assert "hostUsers" not in pod["spec"] and pod["spec"]["runtimeClassName"] == "gvisor"
    assert refusals(gvisor_chart, pod) == []


GVISOR_WIDENINGS = {
    "the node's kernel": mutate(lambda p: p["spec"].pop("runtimeClassName")),
    "another runtime class": mutate(lambda p: p["spec"].update(runtimeClassName="runc")),
    "an unmasked /proc": mutate(
        lambda p: container(p)["securityContext"].update(procMount="Unmasked")
    ),
    "the node's process namespace": mutate(lambda p: p["spec"].update(hostPID=True)),
    "the node's network": mutate(lambda p: p["spec"].update(hostNetwork=True)),
    "the node's users, said outright": mutate(lambda p: p["spec"].update(hostUsers=True)),
}


@pytest.mark.parametrize("widening", list(GVISOR_WIDENINGS))
def test_every_widening_of_a_runner_pod_under_gvisor_is_refused(
    gvisor_chart: list[dict[str, Any]], widening: str
) -> None:
    assert refusals(gvisor_chart, GVISOR_WIDENINGS[widening](pod_of(gvisor_chart))), widening


def test_no_user_namespace_is_refused_without_a_runtime_class() -> None:
    assert "runtimeClassName" in refusal("runner.userNamespace=false")


def context_pod_of(chart: list[dict[str, Any]]) -> Pod:
    """A code context's pod as the operator makes it, from the template the chart's
    controller publishes (the same runner settings, its longest lifetime)."""
    settings = env(one(chart, "Deployment", name=CONTROLLER))
    template = ContextPodTemplate(
        runner_spec(chart),
        int(settings["WARM_SANDBOX_MAX_AGE_S"]),
        int(settings["CONTEXT_MAX_LIFETIME_S"]),
    )
    warm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "p", "uid": "u"}}
    return context_pod(template, "ctx-0123456789abcdef", "0" * 64, owner_reference(warm))


def test_a_context_pod_lives_as_long_as_a_context_may_and_no_longer(
    chart: list[dict[str, Any]], controller_pod: Pod
) -> None:
    pod = context_pod_of(chart)
    assert "--context" in pod["spec"]["containers"][0]["command"]
    assert pod["spec"]["activeDeadlineSeconds"] > controller_pod["spec"]["activeDeadlineSeconds"]
    assert refusals(chart, pod, user=OPERATOR_USER) == []
    # Claimed: the operator's compare-and-swap relabels it and hands it to its context.
    claimed = copy.deepcopy(pod)
    claimed["spec"]["nodeName"] = "node-1"
    claimed["metadata"]["labels"].update(CLAIM)
    assert refusals(chart, claimed, operation="UPDATE", user=OPERATOR_USER) == []
    for widened in (
        mutate(lambda p: p["spec"].update(activeDeadlineSeconds=30 * 86_400))(pod),
        # The label that grants the longer deadline grants nothing else.
        mutate(lambda p: container(p).update(image="docker.io/library/busybox"))(pod),
    ):
        assert refusals(chart, widened, user=OPERATOR_USER) != []
    # Only the operator makes or changes one: a controller (compromised, say) that
    # labels a pod so, to keep a runner image running for hours, is refused.
    for operation in ("CREATE", "UPDATE"):
        refused = refusals(chart, pod, operation=operation, user=CONTROLLER_USER)
        assert "a code context's pod is the operator's to make and to change" in refused
    # A runner pod for one execution does not get a context's deadline.
    long_lived = copy.deepcopy(controller_pod)
    long_lived["spec"]["activeDeadlineSeconds"] = pod["spec"]["activeDeadlineSeconds"]
    assert any("deadline" in message for message in refusals(chart, long_lived))
    assert any("deadline" in message for message in refusals(chart, long_lived, user=OPERATOR_USER))


CLAIM = {"sandbox-controller.dev/pool": "claimed", "sandbox-controller.dev/session": "ctx-1"}
