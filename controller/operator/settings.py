"""The operator's settings: the session rules it shares with the controller, and its pods'."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from controller.kubernetes.browser_manifests import BrowserPodSpec
from controller.operator.kinds import BrowserKind, ContextKind
from controller.pod_scheduling import PodScheduling
from controller.settings import (
    QUANTITY,
    SECCOMP_PROFILE,
    BrowserSessionRules,
    SandboxNamespaceRules,
)

POD_AGE_MARGIN_S = 600
"""A pod's deadline past its longest possible use: start-up, a last call, shutdown."""


class OperatorSettings(BrowserSessionRules, SandboxNamespaceRules):
    """Read from the environment like the controller's (the chart sets both)."""

    browser_image: str = Field(
        "localhost/sandbox-browser:latest", min_length=1, description="Image of browser pods."
    )
    browser_image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="imagePullPolicy of browser pods."
    )
    browser_seccomp_profile: str = Field(
        SECCOMP_PROFILE,
        min_length=1,
        description="Localhost seccomp profile of browser pods (it must allow user "
        "namespaces for Chromium's own sandbox; the runner's does).",
    )
    browser_cpu_request: str = Field("250m", pattern=QUANTITY, description="CPU request.")
    browser_cpu_limit: str = Field("1", pattern=QUANTITY, description="CPU limit of a pod.")
    browser_ephemeral_storage_mb: int = Field(
        512, ge=64, description="Ephemeral-storage limit of a browser pod (profile, cache)."
    )
    browser_warm_pod_max_age_s: int = Field(
        3600, ge=60, le=86_400, description="A warm browser pod unused this long is replaced."
    )
    browser_pod_start_timeout_s: float = Field(
        90, gt=0, le=600, description="How long a browser pod may take to become ready."
    )
    browser_review_interval_s: float = Field(
        2.0, gt=0, le=60, description="How often each session's idle time and pod are checked."
    )
    browser_finished_retention_s: int = Field(
        300,
        ge=0,
        le=86_400,
        description="A Failed or Expired BrowserSession stays this long (its pod is gone at "
        "once), so callers get a reason rather than a bare 404.",
    )
    browser_pod_scheduling: PodScheduling = Field(
        default=PodScheduling(),
        description="Where browser pods run, as JSON: nodeSelector, tolerations, "
        "priorityClassName, runtimeClassName, imagePullSecrets (the chart's browser.* and "
        "imagePullSecrets).",
    )
    context_warm_pods: int = Field(
        1,
        ge=0,
        le=64,
        description="Context pods (a runner's sandbox warm, no context yet) kept ready for "
        "new code contexts. How they are made, the controller publishes.",
    )
    context_pod_start_timeout_s: float = Field(
        60, gt=0, le=600, description="How long a context pod may take to become ready."
    )
    context_review_interval_s: float = Field(
        2.0, gt=0, le=60, description="How often each context's idle time and pod are checked."
    )
    context_finished_retention_s: int = Field(
        300,
        ge=0,
        le=86_400,
        description="A Failed or Expired CodeContext stays this long (its pod is gone at "
        "once), so callers get a reason rather than a bare 404.",
    )
    operator_health_port: int = Field(8081, ge=1, le=65535, description="Liveness endpoint.")

    def pod_spec(self) -> BrowserPodSpec:
        return BrowserPodSpec(
            image=self.browser_image,
            pull_policy=self.browser_image_pull_policy,
            seccomp_profile=self.browser_seccomp_profile,
            cpu_request=self.browser_cpu_request,
            cpu_limit=self.browser_cpu_limit,
            memory_mb=self.browser_memory_mb,
            ephemeral_storage_mb=self.browser_ephemeral_storage_mb,
            chromium_sandbox=self.browser_chromium_sandbox,
            allow_private_networks=self.browser_allow_private_networks,
            max_age_s=self.browser_warm_pod_max_age_s
            + self.browser_max_session_lifetime_s
            + POD_AGE_MARGIN_S,
            scheduling=self.browser_pod_scheduling,
        )

    def browser_kind(self) -> BrowserKind:
        return BrowserKind(
            spec=self.pod_spec(),
            namespace=self.browser_namespace,
            pool_owner=self.browser_pool_owner,
            warm_pods=self.browser_warm_agents,
            warm_max_age_s=self.browser_warm_pod_max_age_s,
            start_timeout_s=self.browser_pod_start_timeout_s,
            review_interval_s=self.browser_review_interval_s,
            retention_s=self.browser_finished_retention_s,
        )

    def context_kind(self) -> ContextKind:
        return ContextKind(
            namespace=self.kubernetes_namespace,
            pool_owner=self.context_pool_owner,
            warm_pods=self.context_warm_pods,
            start_timeout_s=self.context_pod_start_timeout_s,
            review_interval_s=self.context_review_interval_s,
            retention_s=self.context_finished_retention_s,
        )
