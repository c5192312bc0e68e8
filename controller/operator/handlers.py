"""The kopf handlers of sessions and their pods: thin, over decisions and the pool.

One ``Operator`` per kind of session (controller.operator.kinds: BrowserSessions in the
browser namespace, CodeContexts in the sandbox namespace), each doing:

    create / resume  claim a ready warm pod (or start one), prepare it for the session
                     (a browser is configured for the device; a context's runner needs
                     nothing), report Ready with the endpoint and the Secret
    review timer     every review interval, for every session: read the pod's idle
                     time, end the session at its idle timeout or lifetime, fail it
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

from controller.browser.backend import AgentHandle
from controller.browser.client import SMALL_REPLY_BYTES, AgentClient, reply_object
from controller.errors import AgentRefused, ControllerError, MalformedReply
from controller.kubernetes.api import KubeApi, KubeForbidden, KubeNotFound, KubernetesError
from controller.kubernetes.context_manifests import TemplateMissing
from controller.kubernetes.manifests import APP, LABEL_COMPONENT, LABEL_MANAGED_BY
from controller.kubernetes.resources import SessionResource
from controller.kubernetes.session_pods import EXPIRED, FAILED, GROUP, READY
from controller.operator import decisions
from controller.operator.kinds import SessionKind, Usage
from controller.operator.pool import PodFailed, SessionPool

log = logging.getLogger(__name__)

HEALTH_TIMEOUT_S = 3.0
START_MARGIN_S = 30.0
"""A creation may take the pod's start-up and then its preparation (a browser's
configuration)."""


def refused_for_good(exc: KubernetesError) -> bool:
    """A refusal that retrying does not cure (a full quota, RBAC, admission): the session
    fails at once, rather than its creator waiting out its start timeout."""
    return isinstance(exc, KubeForbidden)


class Operator:
    """One kind's state (the pool, the sessions it has seen) and what each handler does."""

    def __init__(self, kind: SessionKind, api: KubeApi, agents: AgentClient) -> None:
        """``api``: bound to the kind's namespace."""
        self.kind = kind
        self.api = api
        self.agents = agents
        self.pool = SessionPool(kind, api, agents)
        self.sessions: dict[str, SessionResource] = {}
        """Every BrowserSession, as the watch last delivered it (parsed there, once)."""
        self._releasing: set[str] = set()
        """Pods the operator is deleting itself: their deletion is no session's failure."""
        self._reviewer: asyncio.Task[None] | None = None

    @property
    def start_deadline_s(self) -> float:
        return self.kind.start_timeout_s + START_MARGIN_S

    async def start(self) -> None:
        for body in await self.api.list_custom(self.kind.resource):
            session = self.kind.parse(body)
            self.sessions[session.name] = session
        await self.pool.start()
        self._reviewer = asyncio.create_task(
            self._review_all(), name=f"{self.kind.pod_noun}-session-review"
        )

    async def stop(self) -> None:
        if self._reviewer is not None:
            self._reviewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reviewer
        await self.pool.stop()

    def session_changed(self, event_type: str, body: dict[str, Any]) -> None:
        session = self.kind.parse(body)
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
        kind = self.kind
        session = kind.parse(body)
        if session.settled:
            return
        name = session.name
        pod_name: str | None = None
        try:
            pod = self.pool.pod_of(name) or await self.pool.claim(body)  # a resume: its pod
            if pod is None:
                await self.api.patch_custom_status(
                    kind.resource,
                    name,
                    decisions.pending(f"starting a {kind.pod_noun} pod (none was warm)"),
                )
                pod = await self.pool.start_for(body)
            pod_name = pod["metadata"]["name"]
            endpoint = await self.pool.until_ready(pod_name)
            handle = AgentHandle(pod_name, endpoint, await self.pool.token(pod_name))
            described = await kind.configure(self.agents, handle, session)
        except PodFailed as exc:
            await self._failed(name, pod_name, str(exc))
            return
        except AgentRefused as exc:
            if exc.details and exc.details[0].get("rule") == "already_configured":
                # An earlier try configured it and its answer was lost: no retry can know
                # what it was given, so the session fails as a platform failure (503).
                await self._failed(
                    name, pod_name, f"the {kind.pod_noun}'s preparation was interrupted"
                )
                return
            error: dict[str, Any] = {
                "status": exc.status_code,
                "code": exc.code,
                "message": exc.message,
            }
            if exc.details is not None:
                error["details"] = exc.details
            await self._failed(name, pod_name, f"the {kind.pod_noun} refused: {exc.message}", error)
            return
        except MalformedReply as exc:
            await self._failed(name, pod_name, exc.message)
            return
        except KubernetesError as exc:
            if refused_for_good(exc):
                await self._failed(name, pod_name, exc.message)
                return
            raise kopf.TemporaryError(exc.message, delay=1) from exc
        except (ControllerError, TemplateMissing) as exc:  # unreachable, slow, not yet: again
            raise kopf.TemporaryError(str(exc), delay=1) from exc
        ready = decisions.ready(pod_name, endpoint, datetime.now(UTC), described)
        try:
            await self.api.patch_custom_status(kind.resource, name, ready)
        except KubeNotFound:
            return  # deleted meanwhile: its pod, owned by it now, goes with it
        except KubernetesError as exc:
            raise kopf.TemporaryError(exc.message, delay=1) from exc
        log.info("%s %s ready on pod %s", kind.noun, name, pod_name)

    async def _failed(
        self, session: str, pod: str | None, reason: str, error: dict[str, Any] | None = None
    ) -> None:
        """Write Failed, then remove the pod (whose deletion must not read as its death)."""
        ended = decisions.ended(FAILED, reason, datetime.now(UTC), error)
        await self.api.patch_custom_status(self.kind.resource, session, ended)
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
                    log.warning("reviewing %s %s: %s", self.kind.noun, name, result)
            await asyncio.sleep(self.kind.review_interval_s)

    async def review(self, name: str) -> None:
        kind = self.kind
        session = self.sessions.get(name)
        if session is None or session.deleting:
            return
        pod_name = session.status.pod
        usage = Usage(None, {})
        if session.phase == READY:
            usage = await self._usage(session)
        verdict = decisions.review(
            session,
            datetime.now(UTC),
            usage.idle_s,
            kind.retention_s,
            self.pool.pods.get(pod_name) if pod_name is not None else None,
            self.start_deadline_s,
            what=kind.pod_noun,
            usage=usage.status,
            failure=usage.failure,
        )
        if isinstance(verdict, decisions.Remove):
            log.info("%s %s: retention over, deleting it", kind.noun, name)
            await self.api.delete_custom(kind.resource, name)
        elif isinstance(verdict, decisions.Finish):
            log.info("%s %s ends: %s", kind.noun, name, verdict.status["reason"])
            # The status first: the pod's deletion must not read as the pod dying.
            await self.api.patch_custom_status(kind.resource, name, verdict.status)
            self.sessions[name] = session.with_status(verdict.status)
            pod = self.pool.pod_of(name)
            for doomed in {pod_name, pod["metadata"]["name"] if pod else None} - {None, ""}:
                await self.release(str(doomed))
        elif verdict.status:
            await self.api.patch_custom_status(kind.resource, name, verdict.status)

    async def _usage(self, session: SessionResource) -> Usage:
        pod, endpoint = session.status.pod, session.status.endpoint
        if pod is None or endpoint is None:
            return Usage(None, {})
        try:
            handle = AgentHandle(pod, endpoint, await self.pool.token(pod))
            response = await self.agents.request(
                handle,
                "GET",
                self.kind.health_path,
                timeout_s=HEALTH_TIMEOUT_S,
                max_bytes=SMALL_REPLY_BYTES,
            )
            return self.kind.usage(reply_object(response), session, datetime.now(UTC))
        except (ControllerError, KubernetesError):
            return Usage(None, {})  # no answer: the pod's own state says if it died

    # --- pods ---------------------------------------------------------------------------

    async def pod_changed(self, event_type: str, pod: dict[str, Any]) -> None:
        """A pod's event: the pool learns it; a session whose pod died is Failed."""
        self.pool.observe(event_type, pod)
        name = pod["metadata"]["name"]
        if name in self._releasing:
            if event_type == "DELETED":
                self._releasing.discard(name)
            return
        session = decisions.session_of(pod)
        failure = decisions.pod_failure(pod, event_type, what=self.kind.pod_noun)
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
            await self.api.patch_custom_status(self.kind.resource, session, ended)
        except KubeNotFound:
            return  # the session was deleted, and its pod with it: no failure
        log.warning("%s %s failed: %s", self.kind.noun, session, failure)
        self.sessions[session] = seen.with_status(ended)
        if event_type != "DELETED":
            await self.release(name)


def register(
    registry: kopf.OperatorRegistry, operators: list[Operator], agents: AgentClient
) -> None:
    """Attach the handlers to ``registry``, each a call into the operator of its kind.

    kopf watches every resource in every namespace it is given; each kind's handlers
    take only the events of its own namespace.
    """

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        # The namespaces are given; no cluster-wide watching of CRDs and namespaces (RBAC).
        settings.scanning.disabled = True
        settings.persistence.finalizer = f"{GROUP}/operator"
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=GROUP, key="last-handled-configuration"
        )
        settings.posting.level = logging.WARNING
        for operator in operators:
            await operator.start()

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        for operator in operators:
            await operator.stop()
        await agents.close()

    for operator in operators:
        _register_kind(registry, operator)


def _register_kind(registry: kopf.OperatorRegistry, operator: Operator) -> None:
    kind = operator.kind
    resource = kind.resource
    start_timeout = operator.start_deadline_s

    def ours(namespace: str | None, **_: Any) -> bool:
        return namespace == kind.namespace

    names = (resource.group, resource.version, resource.plural)
    opening: dict[str, Any] = {
        "registry": registry,
        "id": f"open-{resource.plural}",
        "when": ours,
        "backoff": 1,
        "timeout": start_timeout,
    }

    @kopf.on.resume(*names, **opening)
    @kopf.on.create(*names, **opening)
    async def opened(body: kopf.Body, **_: Any) -> None:
        await operator.open(dict(body))

    @kopf.on.event(*names, registry=registry, id=f"see-{resource.plural}", when=ours)
    async def session_event(type: str | None, body: kopf.Body, **_: Any) -> None:
        operator.session_changed(type or "ADDED", dict(body))

    @kopf.on.event(
        "v1",
        "pods",
        registry=registry,
        id=f"see-{kind.component}-pods",
        labels={LABEL_COMPONENT: kind.component, LABEL_MANAGED_BY: APP},
        when=ours,
    )
    async def pod_event(type: str | None, body: kopf.Body, **_: Any) -> None:
        await operator.pod_changed(type or "ADDED", dict(body))
