"""The Helm chart as data: what it renders, what it refuses (the real helm, no cluster)."""

from __future__ import annotations

import base64
import json

import pytest

from tests.chart import CHART, helm, one, refusal, render


@pytest.fixture(scope="module")
def default() -> list[dict]:  # type: ignore[type-arg]
    return render()


def env(deployment: dict) -> dict:  # type: ignore[type-arg]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_the_chart_lints() -> None:
    done = helm("lint", str(CHART), "--strict", "--kube-version", "1.37.2")
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_object_lives_in_the_release_or_the_sandbox_namespace(default: list) -> None:  # type: ignore[type-arg]
    for obj in default:
        if obj["kind"] == "Namespace":
            assert obj["metadata"]["name"] == "sandbox-runners"
            continue
        assert obj["metadata"]["namespace"] in {"sandbox", "sandbox-runners"}, obj["kind"]
    kinds = {o["kind"] for o in default}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}, "no cluster-wide rights"


def test_the_controller_may_touch_only_runner_pods_and_leases_in_the_sandbox_namespace(
    default: list,  # type: ignore[type-arg]
) -> None:
    role = one(default, "Role")
    assert role["metadata"]["namespace"] == "sandbox-runners"
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["pods"],
            "verbs": ["create", "delete", "get", "list", "watch", "patch"],
        },
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["create", "delete", "get", "list", "patch"],
        },
    ]
    binding = one(default, "RoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "rel-sandbox-controller", "namespace": "sandbox"}
    ]


def test_runner_pods_may_not_send_anything_and_hear_only_the_controller(default: list) -> None:  # type: ignore[type-arg]
    deny = one(default, "NetworkPolicy", "default-deny")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    runners = one(default, "NetworkPolicy", "runners-from-controller")["spec"]
    assert runners["policyTypes"] == ["Ingress", "Egress"]
    assert runners["egress"] == []  # no DNS, no API server, nothing
    (rule,) = runners["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]
    (peer,) = rule["from"]
    assert peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "sandbox"}}
    controller = one(default, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert peer["podSelector"]["matchLabels"].items() <= controller.items()


def test_the_sandbox_namespace_has_a_quota_and_default_limits(default: list) -> None:  # type: ignore[type-arg]
    quota = one(default, "ResourceQuota")["spec"]["hard"]
    assert quota == {
        "pods": "40",
        "limits.cpu": "40",
        "limits.memory": "64Gi",
        "limits.ephemeral-storage": "20Gi",
    }
    (limit,) = one(default, "LimitRange")["spec"]["limits"]
    assert set(limit["default"]) == {"cpu", "memory", "ephemeral-storage"}


def test_the_controller_runs_locked_down_with_the_token_from_a_secret(default: list) -> None:  # type: ignore[type-arg]
    deployment = one(default, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["enableServiceLinks"] is False
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    variables = env(deployment)
    assert variables["BACKEND"] == "kubernetes"
    assert variables["KUBERNETES_NAMESPACE"] == "sandbox-runners"
    assert variables["AUTH_TOKEN"] == {
        "secretKeyRef": {"name": "rel-sandbox-controller-auth", "key": "token"}
    }
    assert variables["REPLICA_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"


def test_there_is_never_a_default_token() -> None:
    first = one(render(), "Secret")["data"]["token"]
    second = one(render(), "Secret")["data"]["token"]
    assert first != second, "generated at random, not a default"
    assert len(base64.b64decode(first)) >= 32
    given = one(render("auth.token=a-token-of-twenty-chars"), "Secret")["data"]["token"]
    assert base64.b64decode(given) == b"a-token-of-twenty-chars"
    existing = render("auth.existingSecret=my-token")
    assert not [o for o in existing if o["kind"] == "Secret"]
    assert env(one(existing, "Deployment"))["AUTH_TOKEN"]["secretKeyRef"]["name"] == "my-token"


def test_the_ingress_takes_class_host_and_tls() -> None:
    ingress = one(
        render(
            "ingress.className=traefik",
            "ingress.host=sandbox.example.com",
            "ingress.tlsSecretName=sandbox-tls",
        ),
        "Ingress",
    )["spec"]
    assert ingress["ingressClassName"] == "traefik"
    assert ingress["tls"] == [{"hosts": ["sandbox.example.com"], "secretName": "sandbox-tls"}]
    (rule,) = ingress["rules"]
    assert rule["host"] == "sandbox.example.com"
    assert rule["http"]["paths"][0]["backend"]["service"]["port"] == {"name": "http"}
    assert not [o for o in render("ingress.enabled=false") if o["kind"] == "Ingress"]


def test_the_seccomp_installer_writes_the_repositorys_profile(default: list) -> None:  # type: ignore[type-arg]
    profile = one(default, "ConfigMap")["data"]["profile.json"]
    assert json.loads(profile) == json.loads((CHART / "seccomp/runner-seccomp.json").read_text())
    daemonset = one(default, "DaemonSet")["spec"]["template"]["spec"]
    paths = {v["name"]: v.get("hostPath") for v in daemonset["volumes"]}
    assert paths["seccomp"] == {
        "path": "/var/lib/kubelet/seccomp/sandbox-controller",
        "type": "DirectoryOrCreate",
    }
    moved = render("seccompInstaller.kubeletRootDir=/srv/kubelet")
    hostpath = one(moved, "DaemonSet")["spec"]["template"]["spec"]["volumes"][1]["hostPath"]
    assert hostpath["path"] == "/srv/kubelet/seccomp/sandbox-controller"
    off = render("seccompInstaller.enabled=false")
    assert not [o for o in off if o["kind"] in ("DaemonSet", "ConfigMap")]


def test_settings_pass_through_and_the_local_values_file_renders() -> None:
    deployment = one(render("settings.MAX_CONCURRENT_EXECUTIONS=8"), "Deployment")
    assert env(deployment)["MAX_CONCURRENT_EXECUTIONS"] == "8"
    local = render(files=(CHART / "local-values.yaml",))
    (container,) = one(local, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "localhost/sandbox-controller:local"
    assert container["imagePullPolicy"] == "Never"
    assert env(one(local, "Deployment"))["RUNNER_IMAGE"] == "localhost/sandbox-runner:local"
    assert not [o for o in local if o["kind"] == "DaemonSet"]


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        (("replicaCount=0",), "replicaCount"),
        (("runner.warmPods=-1",), "warmPods"),
        (("runner.warmPods=many",), "warmPods"),
        (("unknownKey=1",), "unknownKey"),
        (("runner.resources.cpuLimit=lots",), "cpuLimit"),
        (("runner.image.pullPolicy=Sometimes",), "pullPolicy"),
        (("auth.token=short",), "token"),
        (("sandbox.namespace=Not_A_Name",), "namespace"),
        (("settings.lower_case=1",), "lower_case"),
        (("ingress.host=bad host",), "host"),
        (("seccompInstaller.kubeletRootDir=relative",), "kubeletRootDir"),
        (("auth.token=a-token-of-twenty-chars", "auth.existingSecret=s"), "exclude each other"),
        (("sandbox.namespace=sandbox",), "must not be the release's namespace"),
        (("settings.BACKEND=local",), "set by the chart itself"),
        (("settings.AUTH_TOKEN=a-token-of-twenty-chars",), "set by the chart itself"),
        (("ingress.tlsSecretName=tls",), "needs ingress.host"),
    ],
)
def test_bad_values_are_refused(values: tuple[str, ...], complaint: str) -> None:
    assert complaint in refusal(*values)
