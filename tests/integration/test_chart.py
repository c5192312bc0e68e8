"""The Helm chart as data: what it renders, what it refuses (the real helm, no cluster)."""

from __future__ import annotations

import base64
import json
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from browser_agent.protocol import SessionNetwork

from controller.metrics import Metrics
from controller.pod_scheduling import PodScheduling
from controller.settings import Settings
from tests import chart_values
from tests.chart import CHART, REGISTRY, helm, one, refusal, render


@pytest.fixture(scope="module")
def default() -> list[dict]:  # type: ignore[type-arg]
    return render()


def env(deployment: dict) -> dict:  # type: ignore[type-arg]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


@pytest.mark.parametrize(
    "values", [("--set", f"image.registry={REGISTRY}"), ("-f", str(CHART / "local-values.yaml"))]
)
def test_the_chart_lints(values: tuple[str, ...]) -> None:
    done = helm("lint", str(CHART), "--strict", "--kube-version", "1.37.2", *values)
    assert done.returncode == 0, done.stdout + done.stderr
    # A guard's failure is only information to helm lint: none may fire.
    assert "Fail:" not in done.stdout + done.stderr, done.stdout + done.stderr


CONTROLLER = "rel-sandbox-controller"
SERVED_METRICS = Metrics().names()
OPERATOR = "rel-sandbox-controller-operator"
RUNNERS, BROWSERS = "sandbox-runners", "sandbox-browsers"


def test_every_object_lives_in_the_release_or_a_sandbox_namespace(default: list) -> None:  # type: ignore[type-arg]
    for obj in default:
        if obj["kind"] == "Namespace":
            assert obj["metadata"]["name"] in {RUNNERS, BROWSERS}
            continue
        if obj["kind"] == "CustomResourceDefinition":
            assert obj["metadata"]["name"] in {
                "browsersessions.sandbox-controller.dev",
                "codecontexts.sandbox-controller.dev",
            }
            continue
        if obj["kind"].startswith("ValidatingAdmissionPolicy"):  # the runner pods' shape
            assert obj["metadata"]["name"] == "rel-sandbox-controller-runner-pods"
            continue
        assert obj["metadata"]["namespace"] in {"sandbox", RUNNERS, BROWSERS}, obj["kind"]
    kinds = {o["kind"] for o in default}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}, "no cluster-wide rights"


def test_the_controller_may_touch_only_runner_pods_leases_and_contexts_in_the_sandbox_namespace(
    default: list,  # type: ignore[type-arg]
) -> None:
    role = one(default, "Role", CONTROLLER, namespace=RUNNERS)
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
        {
            "apiGroups": ["sandbox-controller.dev"],
            "resources": ["codecontexts"],
            "verbs": ["create", "delete", "get", "list", "watch"],
        },
        # The tokens of the context pods, read; and the template they are made from.
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": [Settings.model_fields["context_pool_owner"].default],
            "verbs": ["get", "patch"],
        },
    ]
    assert one(default, "ConfigMap", "context-pool", RUNNERS)
    binding = one(default, "RoleBinding", CONTROLLER, namespace=RUNNERS)
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "rel-sandbox-controller", "namespace": "sandbox"}
    ]


def test_runner_pods_may_not_send_anything_and_hear_only_the_controller(default: list) -> None:  # type: ignore[type-arg]
    deny = one(default, "NetworkPolicy", "default-deny", RUNNERS)
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    runners = one(default, "NetworkPolicy", "runners-from-controller")["spec"]
    assert runners["policyTypes"] == ["Ingress", "Egress"]
    assert runners["egress"] == []  # no DNS, no API server, nothing
    (rule,) = runners["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]
    (peer,) = rule["from"]
    assert peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "sandbox"}}
    controller = one(default, "Deployment", CONTROLLER)["spec"]["template"]["metadata"]["labels"]
    assert peer["podSelector"]["matchLabels"].items() <= controller.items()


def test_the_sandbox_namespace_has_a_quota_and_default_limits(default: list) -> None:  # type: ignore[type-arg]
    quota = one(default, "ResourceQuota", namespace=RUNNERS)["spec"]["hard"]
    assert quota == {
        "pods": "40",
        "limits.cpu": "40",
        "limits.memory": "64Gi",
        "limits.ephemeral-storage": "20Gi",
    }
    (limit,) = one(default, "LimitRange")["spec"]["limits"]
    assert set(limit["default"]) == {"cpu", "memory", "ephemeral-storage"}


def test_the_controller_runs_locked_down_with_the_token_from_a_secret(default: list) -> None:  # type: ignore[type-arg]
    deployment = one(default, "Deployment", CONTROLLER)
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


def test_a_stopping_replica_drains_within_its_pods_grace() -> None:
    deployment = one(render("shutdownGraceSeconds=40"), "Deployment", CONTROLLER)
    pod = deployment["spec"]["template"]["spec"]
    assert env(deployment)["SHUTDOWN_GRACE_S"] == "40"
    preStop = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    # The pause, the drain, then its runner pods' deletion: all before the kubelet kills it.
    assert pod["terminationGracePeriodSeconds"] >= 40 + preStop + 10
    assert "set by the chart itself" in refusal("settings.SHUTDOWN_GRACE_S=5")


def test_named_keys_come_from_a_secret_mounted_read_only() -> None:
    default = one(render(), "Deployment", CONTROLLER)
    assert "AUTH_KEYS_FILE" not in env(default)
    deployment = one(render("auth.keysSecret=team-keys"), "Deployment", CONTROLLER)
    pod = deployment["spec"]["template"]["spec"]
    path = env(deployment)["AUTH_KEYS_FILE"]
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "keys"]
    assert mount["readOnly"] is True and path == mount["mountPath"] + "/keys.yaml"
    (volume,) = [v for v in pod["volumes"] if v["name"] == "keys"]
    assert volume["secret"]["secretName"] == "team-keys"
    assert "set by the chart itself" in refusal("settings.AUTH_KEYS_FILE=/x")


def test_metrics_are_scraped_with_the_token_and_the_dashboard_reads_them() -> None:
    default = render()
    assert not [o for o in default if o["kind"] == "ServiceMonitor"]
    assert env(one(default, "Deployment", CONTROLLER))["METRICS_PUBLIC"] == "false"
    objects = render(
        "metrics.serviceMonitor.enabled=true",
        "metrics.serviceMonitor.labels.release=prometheus",
        "metrics.dashboard.enabled=true",
    )
    monitor = one(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    assert endpoint["authorization"]["credentials"] == {
        "name": "rel-sandbox-controller-auth",
        "key": "token",
    }
    service = one(objects, "Service", CONTROLLER)
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    public = one(
        render("metrics.serviceMonitor.enabled=true", "metrics.public=true"), "ServiceMonitor"
    )
    assert "authorization" not in public["spec"]["endpoints"][0]
    dashboard = one(objects, "ConfigMap", "rel-sandbox-controller-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    panels = json.loads(dashboard["data"]["sandbox-controller.json"])["panels"]
    exprs = " ".join(t["expr"] for p in panels for t in p["targets"])
    # Every metric the dashboard reads is one the service serves (controller.metrics).
    served = set(re.findall(r"sandbox_[a-z_]+", exprs))
    assert served <= SERVED_METRICS, served - SERVED_METRICS


def test_there_is_never_a_default_token() -> None:
    first = one(render(), "Secret")["data"]["token"]
    second = one(render(), "Secret")["data"]["token"]
    assert first != second, "generated at random, not a default"
    assert len(base64.b64decode(first)) >= 32
    given = one(render("auth.token=a-token-of-twenty-chars"), "Secret")["data"]["token"]
    assert base64.b64decode(given) == b"a-token-of-twenty-chars"
    existing = render("auth.existingSecret=my-token")
    assert not [o for o in existing if o["kind"] == "Secret"]
    assert (
        env(one(existing, "Deployment", CONTROLLER))["AUTH_TOKEN"]["secretKeyRef"]["name"]
        == "my-token"
    )


def test_the_ingress_takes_class_host_and_tls() -> None:
    ingress = one(
        render(
            "ingress.enabled=true",
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


def notes(*values: str) -> str:
    """What `helm install` prints after installing. `helm template` leaves NOTES.txt out
    and `install --dry-run` needs a cluster, so a copy of the chart renders it as a
    ConfigMap, with the same engine and values."""
    with tempfile.TemporaryDirectory() as tmp:
        chart = Path(tmp) / "chart"
        shutil.copytree(CHART, chart)
        text = (chart / "templates/NOTES.txt").read_text()
        (chart / "templates/_notes.tpl").write_text(
            f'{{{{- define "notes" -}}}}{text}{{{{- end -}}}}'
        )
        (chart / "templates/notes.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
            'data: {notes: {{ include "notes" . | quote }}}\n'
        )
        rendered = render(*values, chart=chart)
    return str(one(rendered, "ConfigMap", "notes")["data"]["notes"])


def test_the_ingress_is_off_unless_asked_and_plain_http_is_called_out(default: list) -> None:  # type: ignore[type-arg]
    assert not [o for o in default if o["kind"] == "Ingress"]
    assert (
        one(render("ingress.host=s.example"), "Ingress")["spec"]["rules"][0]["host"] == "s.example"
    )
    assert not [
        o
        for o in render("ingress.host=s.example", "ingress.enabled=false")
        if o["kind"] == "Ingress"
    ]
    assert "port-forward" in notes()
    plain = notes("ingress.enabled=true")
    assert "WARNING: the Ingress serves plain HTTP on every host name" in plain
    assert "http://<your ingress address>/execute" in plain
    secure = notes("ingress.enabled=true", "ingress.host=s.example", "ingress.tlsSecretName=t")
    assert "WARNING" not in secure
    assert "https://s.example/execute" in secure
    # A generated token is kept by upgrades, not by tools that render without a cluster.
    assert "auth.existingSecret" in notes()
    assert "auth.existingSecret" not in notes("auth.existingSecret=mine")


DIGEST = "sha256:" + "ab" * 32


def pods(objects: list) -> dict[str, dict]:  # type: ignore[type-arg]
    """Every pod template the chart renders (and the test pod), by its object's name."""
    found = {}
    for obj in objects:
        if obj["kind"] in ("Deployment", "DaemonSet"):
            found[obj["metadata"]["name"]] = obj["spec"]["template"]["spec"]
        elif obj["kind"] == "Pod":
            found[obj["metadata"]["name"]] = obj["spec"]
    return found


def test_images_come_from_the_registry_by_tag_or_digest_with_the_pull_secrets() -> None:
    objects = render(
        "image.registry=registry.example:5000/team",
        "image.digest=" + DIGEST,
        "runner.image.tag=v9",
        "browser.image.registry=mirror.example",
        "browser.image.digest=" + DIGEST,
        "imagePullSecrets={regcred,mirror}",
        "network.allowedDomains={pypi.org}",
    )
    specs = pods(objects)
    assert set(specs) == {
        CONTROLLER, OPERATOR, f"{CONTROLLER}-egress", f"{CONTROLLER}-seccomp", f"{CONTROLLER}-test"
    }  # fmt: skip
    for name, spec in specs.items():
        assert spec["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror"}], name
    controller = specs[CONTROLLER]["containers"][0]
    assert controller["image"] == f"registry.example:5000/team/sandbox-controller@{DIGEST}"
    installer = specs[f"{CONTROLLER}-seccomp"]["containers"][0]
    assert installer["image"] == "registry.example:5000/team/sandbox-runner:v9"
    settings = env(one(objects, "Deployment", CONTROLLER))
    assert settings["RUNNER_IMAGE"] == "registry.example:5000/team/sandbox-runner:v9"
    assert json.loads(settings["RUNNER_POD_SCHEDULING"]) == {
        "imagePullSecrets": ["regcred", "mirror"]
    }
    operator = env(one(objects, "Deployment", OPERATOR))
    assert operator["BROWSER_IMAGE"] == f"mirror.example/sandbox-browser@{DIGEST}"
    # The policy admits the image as the controller names it.
    policy = json.dumps(one(objects, "ValidatingAdmissionPolicy"))
    assert "registry.example:5000/team/sandbox-runner:v9" in policy


def test_runner_and_browser_pods_are_placed_as_the_values_say() -> None:
    objects = render(
        "runner.nodeSelector.pool=untrusted",
        "runner.tolerations[0].key=pool",
        "runner.tolerations[0].value=untrusted",
        "runner.tolerations[0].effect=NoSchedule",
        "runner.runtimeClassName=gvisor",
        "browser.nodeSelector.pool=browsers",
        "browser.tolerations[0].key=browsers",
        "browser.tolerations[0].operator=Exists",
        "browser.priorityClassName=low",
        "browser.runtimeClassName=kata",
        "browser.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight=9",
        "seccompInstaller.tolerations[0].key=other",
        "seccompInstaller.tolerations[0].operator=Exists",
        "nodeSelector.role=services",
        "priorityClassName=services-high",
    )
    runner = PodScheduling.model_validate_json(
        env(one(objects, "Deployment", CONTROLLER))["RUNNER_POD_SCHEDULING"]
    )
    assert runner.pod_fields() == {
        "nodeSelector": {"pool": "untrusted"},
        "tolerations": [
            {"key": "pool", "operator": "Equal", "value": "untrusted", "effect": "NoSchedule"}
        ],
        "runtimeClassName": "gvisor",
    }
    browser = PodScheduling.model_validate_json(
        env(one(objects, "Deployment", OPERATOR))["BROWSER_POD_SCHEDULING"]
    )
    assert browser.pod_fields() == {
        "nodeSelector": {"pool": "browsers"},
        "tolerations": [{"key": "browsers", "operator": "Exists"}],
        "affinity": {
            "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 9}]}
        },
        "priorityClassName": "low",
        "runtimeClassName": "kata",
    }
    specs = pods(objects)
    # The profile must be on every node those pods may land on, tainted pools included.
    assert specs[f"{CONTROLLER}-seccomp"]["tolerations"] == [
        {"key": "pool", "value": "untrusted", "effect": "NoSchedule"},
        {"key": "browsers", "operator": "Exists"},
        {"key": "other", "operator": "Exists"},
    ]
    for name in (CONTROLLER, OPERATOR, f"{CONTROLLER}-test"):
        assert specs[name]["nodeSelector"] == {"role": "services"}, name
        assert specs[name]["priorityClassName"] == "services-high", name
    # Nothing given: nothing set, and the policy admits no placement of the pod's own.
    default = env(one(render(), "Deployment", CONTROLLER))
    assert json.loads(default["RUNNER_POD_SCHEDULING"]) == {}


def test_the_controller_is_live_apart_from_ready_and_drained_one_replica_at_a_time(
    default: list,  # type: ignore[type-arg]
) -> None:
    (container,) = pods(default)[CONTROLLER]["containers"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    budget = one(default, "PodDisruptionBudget")["spec"]
    assert budget["maxUnavailable"] == 1
    assert budget["selector"]["matchLabels"]["app.kubernetes.io/component"] == "controller"
    assert not [
        o for o in render("podDisruptionBudget.enabled=false") if o["kind"] == "PodDisruptionBudget"
    ]


def test_the_crd_outlives_an_uninstall_or_is_left_to_the_operator(default: list) -> None:  # type: ignore[type-arg]
    for crd in (o for o in default if o["kind"] == "CustomResourceDefinition"):
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    for crd in (o for o in render("crds.keep=false") if o["kind"] == "CustomResourceDefinition"):
        assert "annotations" not in crd["metadata"]
    assert not [o for o in render("crds.enabled=false") if o["kind"] == "CustomResourceDefinition"]


def test_helm_test_executes_through_the_service_with_the_releases_token(default: list) -> None:  # type: ignore[type-arg]
    (pod,) = [o for o in default if o["kind"] == "Pod"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False
    (container,) = spec["containers"]
    settings = env(pod | {"spec": {"template": {"spec": spec}}})
    assert settings["SANDBOX_URL"] == "http://rel-sandbox-controller.sandbox.svc:80"
    assert settings["SANDBOX_TOKEN"] == {
        "secretKeyRef": {"name": "rel-sandbox-controller-auth", "key": "token"}
    }
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert 'client.execute("print(6 * 7)")' in container["command"][-1]


def test_the_seccomp_installer_writes_the_repositorys_profile(default: list) -> None:  # type: ignore[type-arg]
    profile = one(default, "ConfigMap", "rel-sandbox-controller-seccomp")["data"]["profile.json"]
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
    assert not [
        o for o in off if o["kind"] == "DaemonSet" or o["metadata"]["name"].endswith("-seccomp")
    ]


def test_settings_pass_through_and_the_local_values_file_renders() -> None:
    deployment = one(render("settings.MAX_CONCURRENT_EXECUTIONS=8"), "Deployment", CONTROLLER)
    assert env(deployment)["MAX_CONCURRENT_EXECUTIONS"] == "8"
    local = render(files=(CHART / "local-values.yaml",))
    (container,) = one(local, "Deployment", CONTROLLER)["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "localhost/sandbox-controller:local"
    assert container["imagePullPolicy"] == "Never"
    assert (
        env(one(local, "Deployment", CONTROLLER))["RUNNER_IMAGE"]
        == "localhost/sandbox-runner:local"
    )
    operator = env(one(local, "Deployment", OPERATOR))
    assert operator["BROWSER_IMAGE"] == "localhost/sandbox-browser:local"
    assert operator["BROWSER_IMAGE_PULL_POLICY"] == "Never"
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
        (("ingress.enabled=true", "ingress.tlsSecretName=tls"), "needs ingress.host"),
        (("browser.namespace=sandbox",), "must differ"),
        (("browser.namespace=sandbox-runners",), "must differ"),
        (("browser.idleTimeoutSeconds=4000",), "must not exceed"),
        (("browser.warmPods=100",), "warmPods"),
        (("publicNetwork.deniedCIDRs={nonsense}",), "deniedCIDRs"),
        # IPv6 is not admitted at all; an IPv6 exception would read as if it were.
        (("publicNetwork.deniedCIDRs={fd00::/8}",), "deniedCIDRs"),
        (("network.allowedDomains={bad domain}",), "allowedDomains"),
        (("network.allowedPorts={70000}",), "allowedPorts"),
        (("network.internalHosts.mirror=not-an-address",), "internalHosts"),
        (("settings.NETWORK_ALLOWED_DOMAINS=a.example",), "set by the chart itself"),
        (("settings.BROWSER_NAMESPACE=x",), "set by the chart itself"),
        (("settings.RUNNER_POD_SCHEDULING=x",), "set by the chart itself"),
        (("image.digest=sha256:short",), "digest"),
        (("image.tag=v1@sha256:x",), "tag"),
        (("image.registry=https://registry.example",), "registry"),
        # None of the images is published: an install that would pull one needs a registry.
        (("image.registry=",), "browser.image: no registry for sandbox-browser"),
        (
            (
                "image.registry=",
                "runner.image.registry=r.example",
                "browser.image.registry=r.example",
            ),
            "image: no registry for sandbox-controller",
        ),
        (
            ("image.registry=", "image.pullPolicy=Never", "browser.image.pullPolicy=Never"),
            "runner.image: no registry",
        ),
        (("imagePullSecrets={Bad_Name}",), "imagePullSecrets"),
        (("runner.nodeSelector.bad key=x",), "invalid propertyName 'bad key'"),
        (("runner.nodeSelector.pool=bad value",), "nodeSelector"),
        (("runner.tolerations[0].effect=Sometimes",), "effect"),
        (("runner.runtimeClassName=Not_A_Class",), "runtimeClassName"),
        (("podDisruptionBudget.maxUnavailable=lots",), "maxUnavailable"),
    ],
)
def test_bad_values_are_refused(values: tuple[str, ...], complaint: str) -> None:
    assert complaint in refusal(*values)


def test_browser_sessions_are_a_resource_with_a_schema_a_status_and_columns(default: list) -> None:  # type: ignore[type-arg]
    crd = one(default, "CustomResourceDefinition", "browsersessions.sandbox-controller.dev")
    assert crd["spec"]["group"] == "sandbox-controller.dev"
    assert crd["spec"]["scope"] == "Namespaced"
    (version,) = crd["spec"]["versions"]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Phase"] == ".status.phase"
    assert columns["Pod"] == ".status.pod"
    schema = version["schema"]["openAPIV3Schema"]["properties"]
    spec = schema["spec"]
    assert set(spec["required"]) == {"device", "idleTimeoutS", "maxLifetimeS", "network"}
    assert spec["properties"]["idleTimeoutS"]["maximum"] == 86400
    # The network the agent is given, field for field (browser_agent.protocol).
    network = spec["properties"]["network"]["properties"]
    assert set(network) == set(SessionNetwork.model_fields)
    assert network["allowedDomains"]["nullable"] is True  # null: the public web
    limit = SessionNetwork.model_fields["deniedDomains"].metadata[0].max_length
    assert network["deniedDomains"]["maxItems"] == limit
    assert schema["status"]["properties"]["phase"]["enum"] == [
        "Pending",
        "Ready",
        "Failed",
        "Expired",
    ]


def test_the_operator_is_one_locked_down_replica_with_rights_only_in_the_two_namespaces(
    default: list,  # type: ignore[type-arg]
) -> None:
    deployment = one(default, "Deployment", OPERATOR)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}  # never two side by side
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["command"][-1] == "controller.operator"
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    role = one(default, "Role", OPERATOR, BROWSERS)
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    assert resources == {
        "browsersessions",
        "browsersessions/status",
        "codecontexts",  # read only: kopf watches every kind in every namespace it has
        "pods",
        "secrets",
        "configmaps",
        "events",
    }
    contexts = one(default, "Role", OPERATOR, RUNNERS)
    verbs = {r: set(rule["verbs"]) for rule in contexts["rules"] for r in rule["resources"]}
    assert verbs["codecontexts/status"] == {"get", "patch"}
    assert verbs["browsersessions"] == {"get", "list", "watch"}
    assert "create" not in verbs["codecontexts"]  # the controller's to create
    for role in (contexts, one(default, "Role", OPERATOR, BROWSERS)):
        for rule in role["rules"]:
            if "configmaps" in rule["resources"]:
                assert rule["resourceNames"] in (["browser-pool"], ["context-pool"])
    operator = env(deployment)
    assert operator["KUBERNETES_NAMESPACE"] == RUNNERS
    assert operator["CONTEXT_WARM_PODS"] == "1"
    # The controller's rights there: sessions, and reading tokens; never pods.
    mine = one(default, "Role", CONTROLLER, BROWSERS)
    assert {r for rule in mine["rules"] for r in rule["resources"]} == {
        "browsersessions",
        "secrets",
        "configmaps",
    }
    assert {
        v for rule in mine["rules"] if "secrets" in rule["resources"] for v in rule["verbs"]
    } == {"get"}


def test_both_processes_get_the_same_session_rules(default: list) -> None:  # type: ignore[type-arg]
    rules = [k for k in env(one(default, "Deployment", OPERATOR)) if k.startswith("BROWSER_")]
    controller = env(one(default, "Deployment", CONTROLLER))
    operator = env(one(default, "Deployment", OPERATOR))
    for name in ("BROWSER_NAMESPACE", "BROWSER_MAX_IDLE_TIMEOUT_S", "BROWSER_WARM_AGENTS"):
        assert name in rules
        assert controller[name] == operator[name]


def test_browser_pods_hear_only_the_controller_and_the_operator_and_reach_only_public_addresses(
    default: list,  # type: ignore[type-arg]
) -> None:
    deny = one(default, "NetworkPolicy", "default-deny", BROWSERS)
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    policy = one(default, "NetworkPolicy", "browsers", BROWSERS)["spec"]
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"protocol": "TCP", "port": 8080}]
    components = {
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for peer in ingress["from"]
    }
    assert components == {"controller", "operator"}
    dns, public = policy["egress"]
    assert {p["port"] for p in dns["ports"]} == {53, "dns", "dns-tcp"}
    (block,) = public["to"]
    assert block["ipBlock"]["cidr"] == "0.0.0.0/0"
    assert {
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "168.63.129.16/32",
    } <= set(block["ipBlock"]["except"])
    assert "ports" not in public
    # Context pods in the sandbox namespace: heard by both, reaching nothing.
    contexts = one(default, "NetworkPolicy", "contexts-from-controller", RUNNERS)["spec"]
    assert contexts["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "code-context"
    assert contexts["egress"] == []
    (heard,) = contexts["ingress"]
    components = {
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for peer in heard["from"]
    }
    assert components == {"controller", "operator"}
    extra = render("browser.egress.extraTo[0].podSelector.matchLabels.app=pages")
    spec = one(extra, "NetworkPolicy", "browsers", BROWSERS)["spec"]
    assert spec["egress"][2] == {"to": [{"podSelector": {"matchLabels": {"app": "pages"}}}]}


def test_the_browser_namespace_has_a_quota_and_the_pools_owner(default: list) -> None:  # type: ignore[type-arg]
    namespace = one(default, "Namespace", BROWSERS)["metadata"]["labels"]
    assert namespace["pod-security.kubernetes.io/enforce"] == "restricted"
    quota = one(default, "ResourceQuota", namespace=BROWSERS)["spec"]["hard"]
    assert quota == {"pods": "20", "limits.cpu": "20", "limits.memory": "24Gi"}
    # The name both processes default to, and the only ConfigMap their Roles may read.
    pool_owner = Settings.model_fields["browser_pool_owner"].default
    assert one(default, "ConfigMap", pool_owner, BROWSERS)
    roles = role_names(default)
    assert len(roles) == 2, roles  # the controller's and the operator's
    for role in (one(default, "Role", roles_name, BROWSERS) for roles_name in roles):
        for rule in role["rules"]:
            if "configmaps" in rule["resources"]:
                assert rule["resourceNames"] == [pool_owner], role["metadata"]["name"]


def role_names(objects: list) -> list[str]:  # type: ignore[type-arg]
    return [
        o["metadata"]["name"]
        for o in objects
        if o["kind"] == "Role" and o["metadata"].get("namespace") == BROWSERS
    ]


NAMES = (
    "network.allowedDomains={files.test,*.example.org}",
    "network.internalHosts.files\\.test=10.1.2.3",
)


def test_without_names_there_is_no_proxy_and_runner_pods_send_nothing(default: list) -> None:  # type: ignore[type-arg]
    assert not [o for o in default if "egress" in o["metadata"]["name"]]
    names = {
        k
        for k in env(one(default, "Deployment", CONTROLLER))
        if k.startswith(("NETWORK_", "EGRESS_"))
    }
    # What holds browser sessions whether or not names are allowed; nothing of a proxy.
    assert names == {"NETWORK_DENIED_DOMAINS", "NETWORK_ALLOWED_PORTS", "NETWORK_INTERNAL_HOSTS"}


def test_names_bring_a_locked_down_proxy_that_only_runner_pods_reach() -> None:
    objects = render(*NAMES, "network.allowedPorts={443}")
    proxy_name = f"{CONTROLLER}-egress"
    controller = env(one(objects, "Deployment", CONTROLLER))
    assert controller["NETWORK_ALLOWED_DOMAINS"] == "files.test,*.example.org"
    assert controller["EGRESS_PROXY"] == f"{proxy_name}.sandbox.svc:3128"
    proxy = one(objects, "Deployment", proxy_name)["spec"]["template"]["spec"]
    (container,) = proxy["containers"]
    assert container["command"][-2:] == ["-m", "controller.egress"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert proxy["automountServiceAccountToken"] is False
    # The controller and the proxy hold the same key, from the chart's Secret.
    keys = [
        e["valueFrom"]["secretKeyRef"]
        for e in (
            *one(objects, "Deployment", CONTROLLER)["spec"]["template"]["spec"]["containers"][0][
                "env"
            ],
            *container["env"],
        )
        if e["name"] == "EGRESS_GRANT_KEY"
    ]
    assert keys == [{"name": proxy_name, "key": "grant-key"}] * 2
    assert one(objects, "Secret", proxy_name)["data"]["grant-key"]
    runners = one(objects, "NetworkPolicy", "runners-from-controller")["spec"]
    (to_proxy,) = runners["egress"]
    assert to_proxy["ports"] == [{"protocol": "TCP", "port": 3128}]
    assert (
        to_proxy["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        == "egress-proxy"
    )
    policy = one(objects, "NetworkPolicy", proxy_name)["spec"]
    (ingress,) = policy["ingress"]
    (heard,) = ingress["from"][0]["podSelector"]["matchExpressions"]
    assert heard == {
        "key": "app.kubernetes.io/component",
        "operator": "In",
        "values": ["runner", "code-context"],  # executions' pods, and contexts'
    }
    contexts = one(objects, "NetworkPolicy", "contexts-from-controller")["spec"]
    assert contexts["egress"] == runners["egress"]
    dns, public, internal = policy["egress"]
    assert {p["port"] for p in dns["ports"]} == {53, "dns", "dns-tcp"}
    assert public["to"][0]["ipBlock"]["cidr"] == "0.0.0.0/0"
    assert "10.0.0.0/8" in public["to"][0]["ipBlock"]["except"]
    assert public["ports"] == internal["ports"] == [{"protocol": "TCP", "port": 443}]
    assert internal["to"] == [{"ipBlock": {"cidr": "10.1.2.3/32"}}]
    # Browser sessions are held to the same names: their pods get the same route.
    assert internal in one(objects, "NetworkPolicy", "browsers", BROWSERS)["spec"]["egress"]


def test_an_ask_callback_alone_brings_the_proxy_and_reaches_its_peers() -> None:
    objects = render(
        "network.askUrl=http://ask.hooks.svc:8080/ask",
        "network.askTo[0].namespaceSelector.matchLabels.name=hooks",
    )
    proxy_name = f"{CONTROLLER}-egress"
    proxy_env = env(one(objects, "Deployment", proxy_name))
    controller = env(one(objects, "Deployment", CONTROLLER))
    assert proxy_env["NETWORK_ASK_URL"] == controller["NETWORK_ASK_URL"]
    assert controller["NETWORK_ALLOWED_DOMAINS"] == ""
    egress = one(objects, "NetworkPolicy", proxy_name)["spec"]["egress"]
    assert {
        "to": [{"namespaceSelector": {"matchLabels": {"name": "hooks"}}}],
        "ports": [{"protocol": "TCP", "port": 8080}],  # the webhook's own port, only
    } in egress


def test_both_sides_of_a_grant_restart_with_a_new_key_and_the_key_outlives_an_uninstall() -> None:
    objects = render(*NAMES, "network.askUrl=https://hooks.example/ask")
    proxy_name = f"{CONTROLLER}-egress"
    for name in (CONTROLLER, proxy_name):
        annotations = one(objects, "Deployment", name)["spec"]["template"]["metadata"][
            "annotations"
        ]
        assert len(annotations["checksum/egress-key"]) == 64
    secret = one(objects, "Secret", proxy_name)
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    public = one(objects, "NetworkPolicy", proxy_name)["spec"]["egress"][1]
    assert {p["port"] for p in public["ports"]} == {80, 443}  # the webhook's port joins


def test_the_charts_readme_describes_every_value_as_values_yaml_does() -> None:
    assert chart_values.undescribed() == []
    readme = (CHART / "README.md").read_text()
    assert readme == chart_values.readme_with_table(readme), "run `make chart-readme`"
    assert '| `runner.runtimeClassName` | `""` |' in readme
