"""The kinds of session the operator serves, and what differs between them.

A BrowserSession and a CodeContext are served alike (controller.operator.handlers and
.pool): a resource, a warm pool of pods, a claim, a token Secret, a review of idle time,
lifetime and the pod's health.  What differs is written here once per kind: where its
resources and pods live, how its pods are made, where its pod answers and reports use,
and what a session's pod is told before it is Ready.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from browser_agent.protocol import ConfigureResponse

from controller.browser.backend import AgentHandle
from controller.browser.client import SMALL_REPLY_BYTES, AgentClient, reply_model
from controller.kubernetes import browser_manifests, context_manifests
from controller.kubernetes.browser_manifests import BrowserPodSpec
from controller.kubernetes.context_manifests import ContextPodTemplate, published_template
from controller.kubernetes.resources import (
    BROWSER_SESSIONS,
    CODE_CONTEXTS,
    BrowserSessionResource,
    CodeContextResource,
    SessionResource,
    reported_count,
    reported_idle_s,
)
from controller.kubernetes.session_pods import CustomResource, pods_selector
from controller.operator.decisions import PodTemplate

CONFIGURE_TIMEOUT_S = 30.0
SETUP_DEADLINE_S = 120
"""A context's controller sets its pod up at once when it is Ready (its files take
seconds): past this, the controller that asked is gone, and the context fails rather
than hold a pod until its idle timeout."""


@dataclass(frozen=True)
class Usage:
    """What a session's pod reports of its use (each figure None when not reported)."""

    idle_s: float | None
    status: dict[str, Any]
    """Fields of the session's status that record it (written with lastUsedAt)."""
    failure: str | None = None
    """Why the session can no longer be used, when its pod's report says so."""


@dataclass(frozen=True, kw_only=True)
class SessionKind(ABC):
    """What the operator needs to know of one kind of session."""

    noun: ClassVar[str]
    """In messages: "browser session", "code context"."""
    pod_noun: ClassVar[str]
    """What runs in its pods, in messages: "browser", "runner"."""
    resource: ClassVar[CustomResource]
    component: ClassVar[str]
    """Its pods' component label."""
    health_path: ClassVar[str]
    """Answered with the pod's token once it can serve: readiness, and use."""
    start_setting: ClassVar[str]
    """The operator's setting that sets ``start_timeout_s`` (named in failures)."""

    namespace: str
    pool_owner: str
    """The ConfigMap (the chart's) that owns warm pods and holds the pool's state."""
    warm_pods: int
    start_timeout_s: float
    review_interval_s: float
    retention_s: int

    @property
    def selector(self) -> str:
        return pods_selector(self.component)

    @abstractmethod
    def parse(self, body: dict[str, Any]) -> SessionResource: ...

    @abstractmethod
    def new_pod_name(self) -> str: ...

    @abstractmethod
    def endpoint(self, pod_ip: str) -> str: ...

    @abstractmethod
    def template(self, pool: dict[str, Any]) -> PodTemplate:
        """How pods are made, from the pool's ConfigMap as last read; TemplateMissing
        when they cannot be made yet."""

    @abstractmethod
    def pod(
        self,
        pool: dict[str, Any],
        name: str,
        token_digest: str,
        owner: dict[str, Any],
        session: str | None,
    ) -> dict[str, Any]: ...

    @abstractmethod
    def usage(self, reply: dict[str, Any], session: SessionResource, now: datetime) -> Usage:
        """What the session's pod reports of its use (``reply``: its health path's)."""

    @abstractmethod
    async def configure(
        self, agents: AgentClient, handle: AgentHandle, session: SessionResource
    ) -> dict[str, Any]:
        """Prepare a claimed pod for ``session``; the status fields that describe it."""


@dataclass(frozen=True, kw_only=True)
class BrowserKind(SessionKind):
    """Browser sessions: browser pods running the browser agent, configured per device."""

    noun = "browser session"
    pod_noun = "browser"
    resource = BROWSER_SESSIONS
    component = browser_manifests.BROWSER_COMPONENT
    health_path = "/health"
    start_setting = "BROWSER_POD_START_TIMEOUT_S"

    spec: BrowserPodSpec
    warm_max_age_s: int

    def parse(self, body: dict[str, Any]) -> SessionResource:
        return BrowserSessionResource.parse(body)

    def new_pod_name(self) -> str:
        return browser_manifests.new_pod_name()

    def endpoint(self, pod_ip: str) -> str:
        return browser_manifests.agent_endpoint(pod_ip)

    def template(self, pool: dict[str, Any]) -> PodTemplate:
        return PodTemplate(version="", warm_max_age_s=self.warm_max_age_s, user_namespace=True)

    def pod(
        self,
        pool: dict[str, Any],
        name: str,
        token_digest: str,
        owner: dict[str, Any],
        session: str | None,
    ) -> dict[str, Any]:
        return browser_manifests.browser_pod(self.spec, name, token_digest, owner, session)

    def usage(self, reply: dict[str, Any], session: SessionResource, now: datetime) -> Usage:
        return Usage(reported_idle_s(reply), {})

    async def configure(
        self, agents: AgentClient, handle: AgentHandle, session: SessionResource
    ) -> dict[str, Any]:
        assert isinstance(session, BrowserSessionResource)
        # The network as the controller decided it: the agent checks it again (422).
        configure = {"device": session.device or "desktop", "network": session.network}
        response = await agents.request(
            handle,
            "POST",
            "/session",
            json=configure,
            timeout_s=CONFIGURE_TIMEOUT_S,
            max_bytes=SMALL_REPLY_BYTES,
        )
        configured = reply_model(response, ConfigureResponse)
        return {
            "device": configured.device,
            "viewport": configured.viewport.model_dump() if configured.viewport else None,
            "userAgent": configured.userAgent,
            "isMobile": bool(configured.isMobile),
            "tabId": configured.tabId,
        }


@dataclass(frozen=True, kw_only=True)
class ContextKind(SessionKind):
    """Code contexts: runner pods serving one context each (``runner serve --context``).

    The pod is Ready once claimed: the controller that created the context sets it up
    (files, limits, its egress grant) over HTTP with the token, as it holds the grant's
    key and the files, which never pass through the resource.
    """

    noun = "code context"
    pod_noun = "runner"
    resource = CODE_CONTEXTS
    component = context_manifests.CONTEXT_COMPONENT
    health_path = "/status"
    start_setting = "CONTEXT_POD_START_TIMEOUT_S"

    def parse(self, body: dict[str, Any]) -> SessionResource:
        return CodeContextResource.parse(body)

    def new_pod_name(self) -> str:
        return context_manifests.new_pod_name()

    def endpoint(self, pod_ip: str) -> str:
        return context_manifests.runner_endpoint(pod_ip)

    @staticmethod
    def _published(pool: dict[str, Any]) -> ContextPodTemplate:
        return published_template(pool)

    def template(self, pool: dict[str, Any]) -> PodTemplate:
        published = self._published(pool)
        return PodTemplate(
            version=published.version,
            warm_max_age_s=published.warm_max_age_s,
            user_namespace=published.pod.user_namespace,
        )

    def pod(
        self,
        pool: dict[str, Any],
        name: str,
        token_digest: str,
        owner: dict[str, Any],
        session: str | None,
    ) -> dict[str, Any]:
        return context_manifests.context_pod(
            self._published(pool), name, token_digest, owner, session
        )

    def usage(self, reply: dict[str, Any], session: SessionResource, now: datetime) -> Usage:
        if reply.get("begun") is not True:
            # Claimed, and not set up yet by its controller (or never will be, if that
            # one went away): unused since it was Ready (the runner's own clock counts
            # from its start, warm in the pool), until its setup deadline.
            if reply.get("busy") is True:
                return Usage(0.0, {})  # being set up now
            waited = max((now - (session.status.ready_at or session.created)).total_seconds(), 0)
            if waited > SETUP_DEADLINE_S:
                return Usage(None, {}, f"not set up by a controller within {SETUP_DEADLINE_S}s")
            return Usage(waited, {})
        # A call under way is use, however long it runs (the runner's clock counts
        # from the end of the last operation).
        idle = 0.0 if reply.get("busy") is True else reported_idle_s(reply)
        recorded = {
            field: count
            for field in ("calls", "restarts")
            if (count := reported_count(reply.get(field))) is not None
        }
        return Usage(idle, recorded)

    async def configure(
        self, agents: AgentClient, handle: AgentHandle, session: SessionResource
    ) -> dict[str, Any]:
        return {}
