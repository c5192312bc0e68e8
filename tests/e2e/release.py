"""The product installed in the e2e cluster as a user installs it, and what tests call.

``install`` runs tests/cluster/k8s-up.sh (the chart, helm/local-values.yaml, plus the
tier's own tests/e2e/values.yaml) and reads the two lines it ends with; ``Ingress`` is
the contract tests' target through the Ingress; ``InClusterFiles`` is the upload tests'
file service, running in a pod.
"""

from __future__ import annotations

import base64
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client

from tests.e2e.kube import RUNNER_IMAGE, delete_ignoring_absent, wait_for_phase
from tests.file_service import Received
from tests.support import ROOT, wait_for

CLUSTER_DIR = ROOT / "tests" / "cluster"
RELEASE_NAMESPACE = "sandbox"
SANDBOX_NAMESPACE = "sandbox-runners"
FILES_NAMESPACE = "e2e-files"
INSTALL_TIMEOUT_S = 15 * 60
"""The first install builds the controller image (pip) and starts everything."""


def install() -> tuple[str, str]:
    """``make k8s-up`` with the e2e values: (SANDBOX_URL, token)."""
    done = subprocess.run(
        [str(CLUSTER_DIR / "k8s-up.sh")],
        stdout=subprocess.PIPE,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
        env={
            **os.environ,
            "SANDBOX_EXTRA_VALUES": str(ROOT / "tests/e2e/values.yaml"),
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


FILES_SCRIPT = (ROOT / "tests" / "file_service.py").read_text()


class InClusterFiles:
    """tests/file_service.py in a pod behind a Service: the controller uploads there."""

    def __init__(self, core: client.CoreV1Api) -> None:
        self._core = core
        core.create_namespace({"metadata": {"name": FILES_NAMESPACE}})
        core.create_namespaced_config_map(
            FILES_NAMESPACE,
            {"metadata": {"name": "files"}, "data": {"file_service.py": FILES_SCRIPT}},
        )
        labels = {"app": "files"}
        core.create_namespaced_pod(
            FILES_NAMESPACE,
            {
                "metadata": {"name": "files", "labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "containers": [
                        {
                            "name": "files",
                            "image": RUNNER_IMAGE,
                            "imagePullPolicy": "Never",
                            "command": ["/usr/bin/python3", "/app/file_service.py", "8000"],
                            "ports": [{"containerPort": 8000}],
                            "volumeMounts": [{"name": "app", "mountPath": "/app"}],
                            "securityContext": {
                                "runAsNonRoot": True,
                                "runAsUser": 10001,
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                    "volumes": [{"name": "app", "configMap": {"name": "files"}}],
                },
            },
        )
        core.create_namespaced_service(
            FILES_NAMESPACE,
            {
                "metadata": {"name": "files"},
                "spec": {"selector": labels, "ports": [{"port": 8000, "targetPort": 8000}]},
            },
        )
        pod = wait_for_phase(core, FILES_NAMESPACE, "files", {"Running"}, timeout=90)
        self.pod_ip = str(pod.status.pod_ip)
        wait_for(self._answers, timeout_s=30, what="the in-cluster file service")

    def _answers(self) -> bool:
        try:
            return httpx.get(self._direct("/received"), timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def _direct(self, path: str) -> str:
        return f"http://{self.pod_ip}:8000{path}"

    def url(self, path: str) -> str:
        return f"http://files.{FILES_NAMESPACE}.svc.cluster.local:8000{path}"

    def received(self) -> list[Received]:
        entries = httpx.get(self._direct("/received"), timeout=10).json()
        return [Received(**{**e, "content": base64.b64decode(e["content"])}) for e in entries]

    def clear(self) -> None:
        httpx.delete(self._direct("/received"), timeout=10)

    def remove(self) -> None:
        delete_ignoring_absent(lambda: self._core.delete_namespace(FILES_NAMESPACE))
        wait_for(
            lambda: _gone(self._core, FILES_NAMESPACE),
            timeout_s=60,
            what=f"namespace {FILES_NAMESPACE} to go",
            interval_s=0.5,
        )


def _gone(core: client.CoreV1Api, namespace: str) -> bool:
    try:
        core.read_namespace(namespace)
    except client.ApiException as exc:
        return exc.status == 404
    return False


def wait_healthy(ingress: Ingress, warm: int | None = None, timeout_s: float = 120) -> None:
    """Until /health is 200 (and, with ``warm``, that many runner pods are warm)."""

    def ready() -> bool:
        body = ingress.healthy()
        if body is None:
            return False
        return warm is None or body["executions"]["warmSandboxes"] >= warm

    wait_for(ready, timeout_s=timeout_s, what="the release to be healthy", interval_s=0.5)
