"""Where runner and browser pods run (RUNNER_POD_SCHEDULING, BROWSER_POD_SCHEDULING): the
fields they add to a pod, and the values refused with the field and the rule named."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from pydantic import ValidationError

from controller.kubernetes.backend import pod_spec
from controller.kubernetes.browser_manifests import browser_pod
from controller.kubernetes.manifests import Owner, runner_pod
from controller.operator.settings import OperatorSettings
from controller.pod_scheduling import PodScheduling
from tests.inprocess import settings

PINNED = (
    '{"nodeSelector": {"pool": "sandbox"}, "runtimeClassName": "gvisor",'
    ' "priorityClassName": "sandbox-low", "imagePullSecrets": ["regcred"],'
    ' "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},'
    ' "tolerations": [{"key": "pool", "value": "sandbox", "effect": "NoSchedule"},'
    ' {"key": "evict", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}]}'
)
PINNED_FIELDS = {
    "nodeSelector": {"pool": "sandbox"},
    "tolerations": [
        {"key": "pool", "operator": "Equal", "value": "sandbox", "effect": "NoSchedule"},
        {"key": "evict", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30},
    ],
    "priorityClassName": "sandbox-low",
    "runtimeClassName": "gvisor",
    "imagePullSecrets": [{"name": "regcred"}],
    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
}
DIGEST = hashlib.sha256(b"token").hexdigest()


def test_nothing_given_adds_nothing(tmp_path: Path) -> None:
    spec = pod_spec(settings(tmp_path, backend="kubernetes"))
    pod = runner_pod(spec, "sbx-1", DIGEST, Owner("r", "l", "u"))["spec"]
    for field in PINNED_FIELDS:
        assert field not in pod, field


def test_a_runner_pod_carries_the_setting(tmp_path: Path) -> None:
    scheduling = PodScheduling.model_validate_json(PINNED)
    spec = pod_spec(settings(tmp_path, backend="kubernetes", runner_pod_scheduling=scheduling))
    pod = runner_pod(spec, "sbx-1", DIGEST, Owner("r", "l", "u"))["spec"]
    assert {field: pod[field] for field in PINNED_FIELDS} == PINNED_FIELDS
    # Placement never displaces what isolates the pod.
    assert pod["hostUsers"] is False and pod["automountServiceAccountToken"] is False


def test_a_browser_pod_carries_the_operators_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROWSER_POD_SCHEDULING", PINNED)
    spec = OperatorSettings().pod_spec()
    pod = browser_pod(spec, "browser-1", DIGEST, {"kind": "ConfigMap"})["spec"]
    assert {field: pod[field] for field in PINNED_FIELDS} == PINNED_FIELDS


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ('{"nodeSelector": {"bad key": "x"}}', "nodeSelector 'bad key'"),
        ('{"nodeSelector": {"pool": "bad value"}}', "is not a label and its value"),
        ('{"tolerations": [{"key": "k", "effect": "Sometimes"}]}', "tolerations.0.effect"),
        ('{"tolerations": [{"value": "v"}]}', "without a key must have operator Exists"),
        ('{"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]}', "has no value"),
        ('{"tolerations": [{"key": "k", "tolerationSeconds": 5}]}', "NoExecute effect only"),
        ('{"runtimeClassName": "Not_A_Class"}', "runtimeClassName"),
        ('{"imagePullSecrets": ["UPPER"]}', "is not a Secret's name"),
        ('{"affinity": {"nodeAffinityy": {}}}', "affinity.nodeAffinityy"),
        ('{"hostNetwork": true}', "hostNetwork"),
    ],
)
def test_bad_placement_is_refused_naming_the_field(value: str, complaint: str) -> None:
    with pytest.raises(ValidationError) as refused:
        PodScheduling.model_validate_json(value)
    assert complaint in str(refused.value)
