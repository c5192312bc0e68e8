"""The kopf handlers of BrowserSessions and their pods: thin, over decisions and the pool.

    create / resume  claim a ready warm pod (or start one), configure its browser for
                     the session's device, report Ready with the endpoint and the Secret
    review timer     every BROWSER_REVIEW_INTERVAL_S, for every session: read the agent's
                     idle time, end the session at its idle timeout or lifetime, fail it
                     when its pod is gone, record lastUsedAt, delete finished sessions
                     after their retention, fail creations past their deadline
    pod events       feed the pool; a session whose pod dies is Failed, saying why

The review is one timer for all sessions, not kopf's per-object timers: those hold a
finalizer on every session, so that while the operator is away (restarting, or removed
by ``helm uninstall`` before the CRD) no session could be deleted.  Everything is in the
resources, so a restarted operator resumes every session: the resume handler finishes
creations that were under way, the review restarts, and the pool adopts its warm pods.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

import kopf
from browser_agent.protocol import ConfigureResponse

from controller.browser.backend import AgentHandle
from controller.browser.client import SMALL_REPLY_BYTES, AgentClient, reply_model, reply_object
from controller.errors import AgentRefused, ControllerError, MalformedReply
from controller.kubernetes.api import (
    CustomResource,
    KubeApi,
    KubeForbidden,
    KubeNotFound,
    KubernetesError,
)
from controller.kubernetes.browser_manifests import (
    BROWSER_COMPONENT,
    EXPIRED,
    FAILED,
    GROUP,
    KIND,
    PLURAL,
    READY,
    VERSION,
)
from controller.kubernetes.manifests import APP, LABEL_COMPONENT, LABEL_MANAGED_BY
from controller.kubernetes.resources import BrowserSessionResource
from controller.operator import decisions
from controller.operator.pool import BrowserPool, PodFailed
from controller.operator.settings import OperatorSettings

log = logging.getLogger(__name__)

SESSIONS = CustomResource(GROUP, VERSION, PLURAL, KIND)
CONFIGURE_TIMEOUT_S = 30.0
HEALTH_TIMEOUT_S = 3.0
START_MARGIN_S = 30.0
"""A creation may take the pod's start-up and then the browser's configuration."""


def refused_for_good(exc: KubernetesError) -> bool:
    """A refusal that retrying does not cure (a full quota, RBAC, admission): the session
    fails at once, rather than its creator waiting out its start timeout."""
    return isinstance(exc, KubeForbidden)


class Operator:
    """The operator's state (the pool, the sessions it has seen) and what each handler does."""

    def __init__(self, settings: OperatorSettings, api: KubeApi, agents: AgentClient) -> None:
        self.settings = settings
        self.api = api
        self.agents = agents
        self.pool = BrowserPool(settings, api, agents)
        self.sessions: dict[str, BrowserSessionResource] = {}
        """Every BrowserSession, as the watch last delivered it (parsed there, once)."""
        self._releasing: set[str] = set()
        """Pods the operator is deleting itself: their deletion is no session's failure."""
        self._reviewer: asyncio.Task[None] | None = None

    @property
    def start_deadline_s(self) -> float:
        return self.settings.browser_pod_start_timeout_s + START_MARGIN_S

    async def start(self) -> None:
        for body in await self.api.list_custom(SESSIONS):
            session = BrowserSessionResource.parse(body)
            self.sessions[session.name] = session
        await self.pool.start()
        self._reviewer = asyncio.create_task(self._review_all(), name="session-review")

    async def stop(self) -> None:
        if self._reviewer is not None:
            self._reviewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reviewer
        await self.pool.stop()
        await self.agents.close()

    def session_changed(self, event_type: str, body: dict[str, Any]) -> None:
        session = BrowserSessionResource.parse(body)
        if event_type == "DELETED":
            self.sessions.pop(session.name, None)
        else:
            self.sessions[session.name] = session

    # --- creation -----------------------------------------------------------------------

    async def open(self, body: dict[str, Any]) -> None:
        """End a session's creation: Ready, or Failed with the reason (nothing if it had
        ended already).

        The status is written here rather than handed back to kopf: kopf writes its own
        annotations first and the status after, and the session's creator waits for the
        status, so it comes one write sooner this way.
        """
        session = BrowserSessionResource.parse(body)
        if session.settled:
            return
        name = session.name
        pod_name: str | None = None
        try:
            pod = self.pool.pod_of(name) or await self.pool.claim(body)  # a resume: its pod
            if pod is None:
                await self.api.patch_custom_status(
                    SESSIONS, name, decisions.pending("starting a browser pod (none was warm)")
                )
                pod = await self.pool.start_for(body)
            pod_name = pod["metadata"]["name"]
            endpoint = await self.pool.until_ready(pod_name)
            handle = AgentHandle(pod_name, endpoint, await self.pool.token(pod_name))
            # The network as the controller decided it: the agent checks it again (422).
            configure = {"device": session.device or "desktop", "network": session.network}
            response = await self.agents.request(
                handle,
                "POST",
                "/session",
                json=configure,
                timeout_s=CONFIGURE_TIMEOUT_S,
                max_bytes=SMALL_REPLY_BYTES,
            )
            configured = reply_model(response, ConfigureResponse)
        except PodFailed as exc:
            await self._failed(name, pod_name, str(exc))
            return
        except AgentRefused as exc:
            if exc.details and exc.details[0].get("rule") == "already_configured":
                # An earlier try configured it and its answer was lost: no retry can know
                # what it was given, so the session fails as a platform failure (503).
                await self._failed(name, pod_name, "the browser's configuration was interrupted")
                return
            error: dict[str, Any] = {
                "status": exc.status_code,
                "code": exc.code,
                "message": exc.message,
            }
            if exc.details is not None:
                error["details"] = exc.details
            await self._failed(name, pod_name, f"the browser refused: {exc.message}", error)
            return
        except MalformedReply as exc:
            await self._failed(name, pod_name, exc.message)
            return
        except KubernetesError as exc:
            if refused_for_good(exc):
                await self._failed(name, pod_name, exc.message)
                return
            raise kopf.TemporaryError(exc.message, delay=1) from exc
        except ControllerError as exc:  # the agent unreachable or slow: a fresh try
            raise kopf.TemporaryError(exc.message, delay=1) from exc
        ready = decisions.ready(pod_name, endpoint, configured.model_dump(), datetime.now(UTC))
        try:
            await self.api.patch_custom_status(SESSIONS, name, ready)
        except KubeNotFound:
            return  # deleted meanwhile: its pod, owned by it now, goes with it
        except KubernetesError as exc:
            raise kopf.TemporaryError(exc.message, delay=1) from exc
        log.info("browser session %s ready on pod %s", name, pod_name)

    async def _failed(
        self, session: str, pod: str | None, reason: str, error: dict[str, Any] | None = None
    ) -> None:
        """Write Failed, then remove the pod (whose deletion must not read as its death)."""
        ended = decisions.ended(FAILED, reason, datetime.now(UTC), error)
        await self.api.patch_custom_status(SESSIONS, session, ended)
        seen = self.sessions.get(session)
        if seen is not None:
            self.sessions[session] = seen.with_status(ended)
        if pod is not None:
            await self.release(pod)

    async def release(self, pod: str) -> None:
        """Delete a pod the operator itself ends (its events are then not a failure)."""
        self._releasing.add(pod)
        try:
            await self.pool.delete(pod)
        except KubernetesError as exc:
            log.warning("%s", exc)

    # --- the review timer ---------------------------------------------------------------

    async def _review_all(self) -> None:
        while True:
            names = list(self.sessions)
            results = await asyncio.gather(
                *(self.review(name) for name in names), return_exceptions=True
            )
            for name, result in zip(names, results, strict=True):
                if isinstance(result, Exception):
                    log.warning("reviewing browser session %s: %s", name, result)
            await asyncio.sleep(self.settings.browser_review_interval_s)

    async def review(self, name: str) -> None:
        session = self.sessions.get(name)
        if session is None or session.deleting:
            return
        pod_name = session.status.pod
        idle_s = None
        if session.phase == READY:
            idle_s = await self._idle_s(session)
        verdict = decisions.review(
            session,
            datetime.now(UTC),
            idle_s,
            self.settings.browser_finished_retention_s,
            self.pool.pods.get(pod_name) if pod_name is not None else None,
            self.start_deadline_s,
        )
        if isinstance(verdict, decisions.Remove):
            log.info("browser session %s: retention over, deleting it", name)
            await self.api.delete_custom(SESSIONS, name)
        elif isinstance(verdict, decisions.Finish):
            log.info("browser session %s ends: %s", name, verdict.status["reason"])
            # The status first: the pod's deletion must not read as the pod dying.
            await self.api.patch_custom_status(SESSIONS, name, verdict.status)
            self.sessions[name] = session.with_status(verdict.status)
            pod = self.pool.pod_of(name)
            for doomed in {pod_name, pod["metadata"]["name"] if pod else None} - {None, ""}:
                await self.release(str(doomed))
        elif verdict.status:
            await self.api.patch_custom_status(SESSIONS, name, verdict.status)

    async def _idle_s(self, session: BrowserSessionResource) -> float | None:
        pod, endpoint = session.status.pod, session.status.endpoint
        if pod is None or endpoint is None:
            return None
        try:
            handle = AgentHandle(pod, endpoint, await self.pool.token(pod))
            response = await self.agents.request(
                handle, "GET", "/health", timeout_s=HEALTH_TIMEOUT_S, max_bytes=SMALL_REPLY_BYTES
            )
            return decisions.reported_idle_s(reply_object(response))
        except (ControllerError, KubernetesError):
            return None  # no answer: the pod's own state says if it died

    # --- pods ---------------------------------------------------------------------------

    async def pod_changed(self, event_type: str, pod: dict[str, Any]) -> None:
        """A browser pod's event: the pool learns it; a session whose pod died is Failed."""
        self.pool.observe(event_type, pod)
        name = pod["metadata"]["name"]
        if name in self._releasing:
            if event_type == "DELETED":
                self._releasing.discard(name)
            return
        session = decisions.session_of(pod)
        failure = decisions.pod_failure(pod, event_type)
        if failure is None:
            return
        if session is None:
            return  # a warm pod (its Secret, owned by it, goes with it)
        seen = self.sessions.get(session)
        if seen is None or seen.phase in (FAILED, EXPIRED):
            return
        if seen.phase == READY and seen.status.pod != name:
            return
        ended = decisions.ended(FAILED, failure, datetime.now(UTC))
        try:
            await self.api.patch_custom_status(SESSIONS, session, ended)
        except KubeNotFound:
            return  # the session was deleted, and its pod with it: no failure
        log.warning("browser session %s failed: %s", session, failure)
        self.sessions[session] = seen.with_status(ended)
        if event_type != "DELETED":
            await self.release(name)


def register(registry: kopf.OperatorRegistry, operator: Operator) -> None:
    """Attach the handlers to ``registry``, each a call into ``operator``."""
    start_timeout = operator.start_deadline_s

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        # The namespace is given; no cluster-wide watching of CRDs and namespaces (RBAC).
        settings.scanning.disabled = True
        settings.persistence.finalizer = f"{GROUP}/operator"
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=GROUP, key="last-handled-configuration"
        )
        settings.posting.level = logging.WARNING
        await operator.start()

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        await operator.stop()

    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry, backoff=1, timeout=start_timeout)
    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry, backoff=1, timeout=start_timeout)
    async def opened(body: kopf.Body, **_: Any) -> None:
        await operator.open(dict(body))

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def session_event(type: str | None, body: kopf.Body, **_: Any) -> None:
        operator.session_changed(type or "ADDED", dict(body))

    @kopf.on.event(
        "v1",
        "pods",
        registry=registry,
        labels={LABEL_COMPONENT: BROWSER_COMPONENT, LABEL_MANAGED_BY: APP},
    )
    async def pod_event(type: str | None, body: kopf.Body, **_: Any) -> None:
        await operator.pod_changed(type or "ADDED", dict(body))
