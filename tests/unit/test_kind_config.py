"""kind-config.yaml stays consistent with what the runner pods need (see tests/cluster)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_kind_config_mounts_the_profile_the_pods_name_and_enables_user_namespaces() -> None:
    config = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    assert config["kind"] == "Cluster"
    assert config["featureGates"]["UserNamespacesSupport"] is True
    (node,) = config["nodes"]
    (mount,) = node["extraMounts"]
    assert (ROOT / mount["hostPath"]).is_file()
    assert mount["containerPath"] == (
        "/var/lib/kubelet/seccomp/sandbox-controller/runner-seccomp.json"
    )
    assert {m["containerPort"] for m in node["extraPortMappings"]} == {80, 443}
    e2e_profile = (ROOT / "tests/e2e/kube.py").read_text()
    assert '"sandbox-controller/runner-seccomp.json"' in e2e_profile


def test_kind_runs_a_kubernetes_the_chart_accepts_pinned_by_digest() -> None:
    (node,) = yaml.safe_load((ROOT / "kind-config.yaml").read_text())["nodes"]
    match = re.fullmatch(r"kindest/node:v1\.(\d+)\.\d+@sha256:[0-9a-f]{64}", node["image"])
    assert match, node["image"]
    chart = yaml.safe_load((ROOT / "helm/Chart.yaml").read_text())
    least = re.fullmatch(r">=1\.(\d+)\.0-0", chart["kubeVersion"])
    assert least and int(match[1]) >= int(least[1])
