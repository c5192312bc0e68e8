"""The product installed in the e2e cluster as a user installs it, and what tests call.

``install`` runs tests/cluster/k8s-up.sh (the chart, helm/local-values.yaml, plus the
tier's own tests/e2e/values.yaml) and reads the two lines it ends with; ``Ingress`` is
the contract tests' target through the Ingress; ``InClusterFiles`` is the upload tests'
file service and ``InClusterPages`` the browser tests' pages, each running in a pod.
"""

from __future__ import annotations

import base64
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from kubernetes import client

from tests.e2e.kube import RUNNER_IMAGE, delete_ignoring_absent, wait_for_phase
from tests.file_service import Received
from tests.support import ROOT, wait_for

CLUSTER_DIR = ROOT / "tests" / "cluster"
RELEASE_NAMESPACE = "sandbox"
SANDBOX_NAMESPACE = "sandbox-runners"
FILES_NAMESPACE = "e2e-files"
PAGES_NAMESPACE = "e2e-pages"
BROWSER_NAMESPACE = "sandbox-browsers"
KUBECONFIG = Path("/var/lib/sandbox-controller-cluster/kubeconfig/admin.kubeconfig")
WARM_PODS: int = yaml.safe_load((ROOT / "helm" / "local-values.yaml").read_text())["runner"][
    "warmPods"
]
"""The release's warm runner pods (helm/local-values.yaml's runner.warmPods)."""
INSTALL_TIMEOUT_S = 15 * 60
"""The first install builds the controller image (pip) and starts everything."""


def install(*more_values: Path) -> tuple[str, str]:
    """``make k8s-up`` with the e2e values (and ``more_values``): (SANDBOX_URL, token)."""
    done = subprocess.run(
        [str(CLUSTER_DIR / "k8s-up.sh")],
        stdout=subprocess.PIPE,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
        env={
            **os.environ,
            "SANDBOX_EXTRA_VALUES": ":".join(
                str(p) for p in (ROOT / "tests/e2e/values.yaml", *more_values)
            ),
        },
        check=False,
    )
    assert done.returncode == 0, f"k8s-up.sh failed ({done.returncode}); see its output"
    *_, url_line, token_line = done.stdout.strip().splitlines()
    url = url_line.removeprefix("SANDBOX_URL=")
    token = Path(token_line.removeprefix("SANDBOX_TOKEN_FILE=")).read_text().strip()
    return url, token


@dataclass
class Ingress:
    """The service through the Ingress, as a caller reaches it."""

    base_url: str
    token: str
    backend: str = "kubernetes"
    kernel: str = "linux"
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(
            base_url=self.base_url,
            timeout=90,
            headers={"Authorization": f"Bearer {self.token}"},
        )

    def execute(self, code: str, **fields: Any) -> dict[str, Any]:
        response = self.client.post("/execute", json={"code": code, **fields})
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def healthy(self) -> dict[str, Any] | None:
        try:
            response = httpx.get(self.base_url + "/health", timeout=5)
        except httpx.TransportError:
            return None
        body: dict[str, Any] = response.json() if response.status_code == 200 else {}
        return body or None


class InClusterScript:
    """A standard-library test server (a script of tests/) in a pod behind a Service.

    It runs from the runner image (python3, nothing else) in a namespace of its own;
    tests reach the pod directly (``direct``) and the product reaches it by its Service
    name (``url``).
    """

    def __init__(self, core: client.CoreV1Api, namespace: str, script: Path, port: int) -> None:
        self._core, self.namespace, self.port = core, namespace, port
        name = script.stem.replace("_", "-")
        self.name = name
        core.create_namespace({"metadata": {"name": namespace}})
        core.create_namespaced_config_map(
            namespace, {"metadata": {"name": name}, "data": {script.name: script.read_text()}}
        )
        labels = {"app": name}
        core.create_namespaced_pod(
            namespace,
            {
                "metadata": {"name": name, "labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    # python3 as PID 1 ignores SIGTERM: no grace to wait out on removal.
                    "terminationGracePeriodSeconds": 0,
                    "containers": [
                        {
                            "name": name,
                            "image": RUNNER_IMAGE,
                            "imagePullPolicy": "Never",
                            "command": ["/usr/bin/python3", f"/app/{script.name}", str(port)],
                            "ports": [{"containerPort": port}],
                            "volumeMounts": [{"name": "app", "mountPath": "/app"}],
                            "securityContext": {
                                "runAsNonRoot": True,
                                "runAsUser": 10001,
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                    "volumes": [{"name": "app", "configMap": {"name": name}}],
                },
            },
        )
        core.create_namespaced_service(
            namespace,
            {
                "metadata": {"name": name},
                "spec": {"selector": labels, "ports": [{"port": port, "targetPort": port}]},
            },
        )
        pod = wait_for_phase(core, namespace, name, {"Running"}, timeout=90)
        self.pod_ip = str(pod.status.pod_ip)

    def direct(self, path: str) -> str:
        return f"http://{self.pod_ip}:{self.port}{path}"

    def url(self, path: str) -> str:
        return f"http://{self.name}.{self.namespace}.svc.cluster.local:{self.port}{path}"

    def answers(self, path: str) -> bool:
        try:
            return httpx.get(self.direct(path), timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def remove(self) -> None:
        delete_ignoring_absent(lambda: self._core.delete_namespace(self.namespace))
        wait_for(
            lambda: _gone(self._core, self.namespace),
            timeout_s=60,
            what=f"namespace {self.namespace} to go",
            interval_s=0.5,
        )


class InClusterFiles(InClusterScript):
    """tests/file_service.py in the cluster: the controller uploads there."""

    def __init__(self, core: client.CoreV1Api) -> None:
        super().__init__(core, FILES_NAMESPACE, ROOT / "tests" / "file_service.py", 8000)
        wait_for(lambda: self.answers("/received"), timeout_s=30, what="the file service")

    def received(self) -> list[Received]:
        entries = httpx.get(self.direct("/received"), timeout=10).json()
        return [Received(**{**e, "content": base64.b64decode(e["content"])}) for e in entries]

    def clear(self) -> None:
        httpx.delete(self.direct("/received"), timeout=10)


class InClusterPages(InClusterScript):
    """tests/pages.py in the cluster: the pages the browser sessions load."""

    def __init__(self, core: client.CoreV1Api) -> None:
        super().__init__(core, PAGES_NAMESPACE, ROOT / "tests" / "pages.py", 8000)
        wait_for(lambda: self.answers("/__requests"), timeout_s=30, what="the page server")

    def requests(self) -> list[str]:
        log: list[str] = httpx.get(self.direct("/__requests"), timeout=10).json()
        return log


def _gone(core: client.CoreV1Api, namespace: str) -> bool:
    try:
        core.read_namespace(namespace)
    except client.ApiException as exc:
        return exc.status == 404
    return False


def helm_upgrade(*values: str, how: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    """``helm upgrade`` of the installed release, keeping its values but for ``values``;
    ``how``: helm's options for it (``--wait``, ``--dry-run=server``...)."""
    from tests.chart import CHART, helm

    args = ["--kubeconfig", str(KUBECONFIG), "upgrade", "sandbox", str(CHART)]
    args += ["-n", RELEASE_NAMESPACE, "--reuse-values", *how]
    for value in values:
        args += ["--set", value]
    return helm(*args, timeout_s=360)


def helm_set(*values: str) -> None:
    """``helm_upgrade``, waited for, that must succeed."""
    done = helm_upgrade(*values, how=("--wait", "--timeout", "5m"))
    assert done.returncode == 0, done.stderr


def wait_healthy(ingress: Ingress, warm: int | None = None, timeout_s: float = 120) -> None:
    """Until /health is 200 (and, with ``warm``, that many runner pods are warm)."""

    def ready() -> bool:
        body = ingress.healthy()
        if body is None:
            return False
        return warm is None or body["executions"]["warmSandboxes"] >= warm

    wait_for(ready, timeout_s=timeout_s, what="the release to be healthy", interval_s=0.5)
