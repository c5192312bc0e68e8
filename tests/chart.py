"""The Helm chart rendered by the real ``helm``: manifests as data for the chart's tests."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import ROOT

CHART = ROOT / "helm"
KUBE_VERSION = "1.37.2"

PINNED = (
    "runner.nodeSelector.pool=sandbox",
    "runner.nodeSelector.sandbox-controller\\.dev/untrusted=yes",
    "runner.tolerations[0].key=pool",
    "runner.tolerations[0].value=sandbox",
    "runner.tolerations[0].effect=NoSchedule",
    "runner.tolerations[1].key=sandbox-controller.dev/evict",
    "runner.tolerations[1].operator=Exists",
    "runner.tolerations[1].effect=NoExecute",
    "runner.tolerations[1].tolerationSeconds=30",
    "runner.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
    ".nodeSelectorTerms[0].matchExpressions[0].key=zone",
    "runner.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
    ".nodeSelectorTerms[0].matchExpressions[0].operator=In",
    "runner.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
    ".nodeSelectorTerms[0].matchExpressions[0].values={a,b}",
    "runner.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight=50",
    "runner.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0]"
    ".podAffinityTerm.topologyKey=kubernetes.io/hostname",
    "runner.runtimeClassName=gvisor",
    "runner.priorityClassName=sandbox-low",
    "imagePullSecrets={regcred}",
)
"""A chart that pins runner pods to a tainted node pool, a runtime and a priority class."""


def helm_binary() -> str:
    """``$HELM``, else the one tests/cluster builds (`make helm-bin`)."""
    if os.environ.get("HELM"):
        return os.environ["HELM"]
    versions = dict(
        line.split("=", 1)
        for line in (ROOT / "tests/cluster/versions.env").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    cache = Path(os.environ.get("CLUSTER_CACHE", "/var/cache/sandbox-controller/cluster"))
    path = cache / f"helm-{versions['HELM_VERSION']}" / "helm"
    if not path.exists():
        pytest.fail(f"no helm at {path}: run `make helm-bin` (or set HELM)")
    return str(path)


def helm(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [helm_binary(), *args], capture_output=True, text=True, timeout=timeout_s, check=False
    )


REGISTRY = "registry.example"
"""Where the tests' installs pull from: the chart refuses to guess (none is published)."""


def render(
    *values: str, files: tuple[Path, ...] = (), namespace: str = "sandbox", chart: Path = CHART
) -> list[dict[str, Any]]:
    """``helm template`` with ``--set`` values (and, without values files, the tests'
    registry); the rendered objects, or a failed test."""
    args = ["template", "rel", str(chart), "--namespace", namespace, "--kube-version", KUBE_VERSION]
    for value in (*(() if files else (f"image.registry={REGISTRY}",)), *values):
        args += ["--set", value]
    for file in files:
        args += ["-f", str(file)]
    done = helm(*args)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def refusal(*values: str) -> str:
    """The error ``helm template`` gives for values it must refuse."""
    args = ["template", "rel", str(CHART), "--namespace", "sandbox", "--kube-version", KUBE_VERSION]
    for value in (f"image.registry={REGISTRY}", *values):
        args += ["--set", value]
    done = helm(*args)
    assert done.returncode != 0, f"values {values} were accepted"
    return done.stderr


def one(
    objects: list[dict[str, Any]],
    kind: str,
    name: str | None = None,
    namespace: str | None = None,
) -> dict[str, Any]:
    found = [
        o
        for o in objects
        if o["kind"] == kind
        and name in (None, o["metadata"]["name"])
        and namespace in (None, o["metadata"].get("namespace"))
    ]
    assert len(found) == 1, [(o["kind"], o["metadata"]["name"]) for o in found]
    return found[0]
