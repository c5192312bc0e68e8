"""Code contexts' objects as data: the published template, context pods, CodeContexts."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from runner.contract import SandboxLimits

from controller.kubernetes.context_manifests import (
    LABEL_TEMPLATE,
    TEMPLATE_KEY,
    ContextPodTemplate,
    TemplateMissing,
    code_context,
    context_pod,
    published_template,
    template_patch,
)
from controller.kubernetes.manifests import RunnerPodSpec
from controller.kubernetes.session_pods import LABEL_POOL, LABEL_SESSION

SPEC = RunnerPodSpec(
    image="localhost/sandbox-runner:latest",
    pull_policy="IfNotPresent",
    seccomp_profile="sandbox-controller/runner-seccomp.json",
    mounted=SandboxLimits(),
    cpu_request="100m",
    cpu_limit="1",
    memory_request_mb=128,
    memory_limit_mb=1152,
    ephemeral_storage_mb=256,
    max_idle_s=660,
)
TEMPLATE = ContextPodTemplate(SPEC, warm_max_age_s=600, max_lifetime_s=14_400)
POOL = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "context-pool", "uid": "u"}}


def pool_with(document: object) -> dict[str, object]:
    return {**POOL, "data": {TEMPLATE_KEY: json.dumps(document)}}


def test_the_published_template_reads_back_and_names_its_version() -> None:
    published = {**POOL, **template_patch(TEMPLATE)}
    assert published_template(published) == TEMPLATE
    # Any change of the runner's settings is another version: warm pods of the old go.
    other = replace(TEMPLATE, pod=replace(SPEC, memory_limit_mb=2048))
    assert other.version != TEMPLATE.version
    assert len(TEMPLATE.version) == 16


@pytest.mark.parametrize(
    "change",
    [
        {"warm_max_age_s": 0},  # would replace every warm pod at every tick
        {"max_lifetime_s": 10**9},
        {"warm_max_age_s": "600"},  # strict: no coercion
        {"pod": {"image": "x"}},  # a partial pod spec is no template
        {"max_lifetime_s": None},
    ],
)
def test_a_template_that_breaks_a_rule_is_no_template(change: dict[str, object]) -> None:
    document = json.loads(template_patch(TEMPLATE)["data"][TEMPLATE_KEY]) | change
    with pytest.raises(TemplateMissing):
        published_template(pool_with(document))
    with pytest.raises(TemplateMissing, match="no controller"):
        published_template(POOL)


def test_a_context_pod_is_a_runner_pod_serving_one_context_for_its_longest_life() -> None:
    warm = context_pod(TEMPLATE, "ctx-0123456789abcdef", "0" * 64, {"kind": "ConfigMap"})
    labels = warm["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "code-context"
    assert (labels[LABEL_POOL], labels[LABEL_TEMPLATE]) == ("warm", TEMPLATE.version)
    assert LABEL_SESSION not in labels
    assert warm["spec"]["containers"][0]["command"][-1] == "--context"
    # Its warm wait, the longest lifetime, and the start-up margin of every runner pod.
    assert warm["spec"]["activeDeadlineSeconds"] == 660 + 14_400 + 120
    assert warm["spec"]["hostUsers"] is False
    claimed = context_pod(TEMPLATE, "ctx-1", "0" * 64, {"kind": "CodeContext"}, "ctx-abc")
    assert claimed["metadata"]["labels"][LABEL_SESSION] == "ctx-abc"
    assert claimed["metadata"]["ownerReferences"] == [{"kind": "CodeContext"}]


def test_a_code_context_carries_the_callers_key_only_as_a_label() -> None:
    body = code_context("ctx-1", 60, 600, {"team": "a"}, ["pypi.org"], "key-a")
    assert body["metadata"]["labels"]["sandbox-controller.dev/key"] == "key-a"
    assert body["spec"] == {
        "idleTimeoutS": 60,
        "maxLifetimeS": 600,
        "labels": {"team": "a"},
        "network": {"allowedDomains": ["pypi.org"]},
    }
    assert code_context("ctx-1", 60, 600, {}, None, "key-a")["spec"]["network"] is None
