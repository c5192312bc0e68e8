"""Code contexts' objects as pure builders: the CodeContext resource and its runner pods.

A context's pod is a runner pod (controller.kubernetes.manifests) that serves one code
context (``python -m runner serve --context``) for its whole life, in the sandbox
namespace with the executions' pods: the same image, seccomp profile, limits, placement
and NetworkPolicy, held by the same admission policy.  The operator keeps the warm ones
and hands one to each new CodeContext; it builds them from the template the controller
publishes on the pool's ConfigMap (``ContextPodTemplate``), so that the runner's
settings are read in one place, the controller's, and a change of them reaches the
warm pods (their ``template`` label no longer matches, and the pool replaces them).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from controller.kubernetes.manifests import (
    APP,
    DEADLINE_MARGIN_S,
    LABEL_KEY,
    LABEL_MANAGED_BY,
    RUNNER_PORT,
    RunnerPodSpec,
    serving_pod,
)
from controller.kubernetes.session_pods import API_VERSION, http_endpoint, pool_labels

PLURAL = "codecontexts"
KIND = "CodeContext"
CONTEXT_COMPONENT = "code-context"
LABEL_TEMPLATE = "sandbox-controller.dev/template"
TEMPLATE_KEY = "podTemplate"
"""The pool's ConfigMap's key that holds the published ContextPodTemplate (JSON)."""


@dataclass(frozen=True)
class ContextPodTemplate:
    """What the controller publishes for the operator: how context pods are made."""

    pod: RunnerPodSpec
    warm_max_age_s: Annotated[int, Field(ge=1, le=86_400)]
    """A warm pod unclaimed this long is replaced (its runner exits a minute later)."""
    max_lifetime_s: Annotated[int, Field(ge=1, le=604_800)]
    """The longest lifetime a context may have (CONTEXT_MAX_LIFETIME_S)."""

    @property
    def version(self) -> str:
        """A short digest of the template: the label that tells a stale warm pod."""
        return hashlib.sha256(encode_template(self)).hexdigest()[:16]

    @property
    def deadline_s(self) -> int:
        """A context pod's activeDeadlineSeconds: its warm wait, the longest lifetime,
        and the margin every runner pod has to start and to answer."""
        return self.pod.max_idle_s + self.max_lifetime_s + DEADLINE_MARGIN_S


_TEMPLATE = TypeAdapter(ContextPodTemplate)


class TemplateMissing(Exception):
    """No usable template on the pool's ConfigMap (no controller has published one)."""


def encode_template(template: ContextPodTemplate) -> bytes:
    return _TEMPLATE.dump_json(template)


def published_template(pool: dict[str, Any]) -> ContextPodTemplate:
    """The template on the pool's ConfigMap; TemplateMissing when there is none that
    reads (strictly: a field of the wrong type, or out of its bounds, is no template)."""
    raw = (pool.get("data") or {}).get(TEMPLATE_KEY)
    if not isinstance(raw, str):
        raise TemplateMissing("no controller has published how to make context pods yet")
    try:
        return _TEMPLATE.validate_json(raw, strict=True)
    except ValidationError as exc:
        raise TemplateMissing(f"the published context pod template is unreadable: {exc}") from None


def template_patch(template: ContextPodTemplate) -> dict[str, Any]:
    """The merge patch that publishes ``template`` on the pool's ConfigMap."""
    return {"data": {TEMPLATE_KEY: encode_template(template).decode()}}


def new_pod_name() -> str:
    return "ctx-" + secrets.token_hex(8)


def context_pod(
    template: ContextPodTemplate,
    name: str,
    token_digest: str,
    owner: dict[str, Any],
    session: str | None = None,
) -> dict[str, Any]:
    """A context's runner pod: warm (owned by the pool) or started for ``session``."""
    labels = pool_labels(CONTEXT_COMPONENT, session)
    labels[LABEL_TEMPLATE] = template.version
    return serving_pod(
        template.pod, name, token_digest, labels, owner, template.deadline_s, context=True
    )


def runner_endpoint(pod_ip: str) -> str:
    return http_endpoint(pod_ip, RUNNER_PORT)


def code_context(
    name: str,
    idle_timeout_s: int,
    max_lifetime_s: int,
    labels: dict[str, str],
    allowed_domains: list[str] | None,
    owner: str,
) -> dict[str, Any]:
    """The CodeContext a controller creates for the caller whose key is named ``owner``
    (a label); the caller's own labels stay in the spec, and ``allowed_domains`` is what
    its calls may reach by name (None: no network at all), as the controller decided."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "labels": {LABEL_MANAGED_BY: APP, LABEL_KEY: owner}},
        "spec": {
            "idleTimeoutS": idle_timeout_s,
            "maxLifetimeS": max_lifetime_s,
            "labels": labels,
            "network": {"allowedDomains": allowed_domains} if allowed_domains is not None else None,
        },
    }
