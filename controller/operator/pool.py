"""The operator's session pods of one kind: the warm pool, claims, cold starts, readiness.

What the pool knows of pods comes from a list at start and then the operator's watch
(``observe``); what it decides comes from controller.operator.decisions.  A warm pod
counts as ready once it answers its kind's health path with its token, so a claimed pod
needs no further wait; the claim itself is one compare-and-swap on the pod, against the
version read while the pod was warm (session_pods.claim_patch).  The pool's ConfigMap
owns the warm pods, and is reread every TEMPLATE_REFRESH_S: a kind may take from it how
its pods are made (kinds.SessionKind.template).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from datetime import UTC, datetime
from typing import Any

from controller.browser.backend import AgentHandle
from controller.browser.client import SMALL_REPLY_BYTES, AgentClient
from controller.errors import ControllerError
from controller.kubernetes.api import (
    KubeApi,
    KubeConflict,
    KubeForbidden,
    KubeNotFound,
    KubernetesError,
)
from controller.kubernetes.context_manifests import TemplateMissing
from controller.kubernetes.session_pods import (
    claim_patch,
    new_token,
    owner_reference,
    secret_token,
    token_secret,
)
from controller.operator import decisions
from controller.operator.decisions import PodTemplate
from controller.operator.kinds import SessionKind
from sandbox_common import bearer

log = logging.getLogger(__name__)

HEALTH_TIMEOUT_S = 3.0
TICK_S = 1.0
CLAIM_QUIET_S = 0.5
"""After a claim the pool waits this long before starting the pod that replaces it: the
session being opened on the claimed pod (its browser's configuration, the status write,
the controller's reply: about 0.2 s) comes first, not a Chromium start beside it on
the same CPUs."""
RETRY_FIRST_S, RETRY_MAX_S = 2.0, 60.0
"""Warm pods that keep failing (a bad image, a missing seccomp profile) are restarted
after a doubling pause, not in a tight loop."""
TEMPLATE_REFRESH_S = 10.0
"""How stale the pool's ConfigMap may be when pods are made from it: a new template
(the controller's settings changed) reaches the warm pods within this."""


class PodFailed(Exception):
    """The pod of a session cannot serve it; the message says why."""


class SessionPool:
    def __init__(self, kind: SessionKind, api: KubeApi, agents: AgentClient) -> None:
        self._kind = kind
        self._api = api
        self._agents = agents
        self.pods: dict[str, dict[str, Any]] = {}
        self._ready: set[str] = set()
        self._tokens: dict[str, str] = {}
        self._owner: dict[str, Any] | None = None
        self._owner_read = 0.0
        self._version: str | None = None
        """The current template's (None until one is known): a warm pod of another
        version is never claimed, and is replaced."""
        self._changed = asyncio.Event()
        self._waiters: set[asyncio.Event] = set()
        self._task: asyncio.Task[None] | None = None
        self._starting: dict[str, asyncio.Task[None]] = {}
        """Warm pods being created, by name: counted, though not seen yet."""
        self._published: int | None = None
        self._failures = 0
        self._create_after = 0.0

    # --- what the watch says ------------------------------------------------------------

    def observe(self, event_type: str, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        if event_type == "DELETED":
            self.pods.pop(name, None)
            self._ready.discard(name)
            self._tokens.pop(name, None)
        else:
            self.pods[name] = pod
            if decisions.pod_failure(pod, what=self._kind.pod_noun) is not None:
                self._ready.discard(name)
        self._changed.set()
        for waiter in self._waiters:
            waiter.set()

    async def _next_change(self, timeout_s: float) -> None:
        """Return at the next pod event, or after ``timeout_s``."""
        waiter = asyncio.Event()
        self._waiters.add(waiter)
        try:
            async with asyncio.timeout(timeout_s):
                await waiter.wait()
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(waiter)

    def _warm_ready(self) -> list[str]:
        """Ready warm pods made from the current template, oldest first."""
        names = [
            n
            for n in self._ready
            if n in self.pods
            and decisions.is_warm(self.pods[n])
            and (self._version is None or decisions.made_from(self.pods[n]) == self._version)
        ]
        return sorted(names, key=lambda n: decisions.created_at(self.pods[n]) or datetime.now(UTC))

    # --- the warm pool ------------------------------------------------------------------

    async def start(self) -> None:
        """Read the pool's owner and every pod of its kind, then keep the pool in the background.

        Listing first means a restarted operator adopts the warm pods it finds instead of
        starting a second pool before its watch has reported them.
        """
        await self._read_owner()
        for pod in await self._api.list_pods(self._kind.selector):
            self.pods.setdefault(pod["metadata"]["name"], pod)
        self._task = asyncio.create_task(self._keep(), name=f"{self._kind.pod_noun}-pool")

    async def _read_owner(self) -> dict[str, Any]:
        owner = await self._api.read_config_map(self._kind.pool_owner)
        owner.setdefault("apiVersion", "v1")
        owner.setdefault("kind", "ConfigMap")
        self._owner, self._owner_read = owner, time.monotonic()
        return owner

    async def _template(self) -> PodTemplate:
        """How pods are made now; TemplateMissing while they cannot be."""
        owner = self._owner
        if owner is None or time.monotonic() - self._owner_read > TEMPLATE_REFRESH_S:
            owner = await self._read_owner()
        template = self._kind.template(owner)
        self._version = template.version
        return template

    async def stop(self) -> None:
        """Stop keeping the pool; the warm pods stay for the next operator to adopt."""
        for task in [self._task, *self._starting.values()]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _keep(self) -> None:
        while True:
            try:
                await self._reconcile()
            except (ControllerError, KubernetesError, TemplateMissing) as exc:
                log.warning("%s pool: %s", self._kind.pod_noun, exc)
            except Exception:  # the pool must outlive any one failure: logged, retried
                log.exception("%s pool: reconcile failed", self._kind.pod_noun)
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK_S):
                    await self._changed.wait()

    async def _reconcile(self) -> None:
        kind = self._kind
        template = await self._template()
        plan = decisions.pool_plan(
            [pod for name, pod in self.pods.items() if name not in self._starting],
            self._ready,
            kind.warm_pods - len(self._starting),
            datetime.now(UTC),
            template,
            kind.start_timeout_s,
            what=kind.pod_noun,
        )
        failed = [
            n
            for n in plan.remove
            if decisions.pod_failure(self.pods[n], what=kind.pod_noun) is not None
        ]
        if failed:
            self._failures += len(failed)
            pause = min(RETRY_FIRST_S * 2 ** (self._failures - 1), RETRY_MAX_S)
            self._create_after = time.monotonic() + pause
        for name in plan.remove:
            log.info("%s pool: removing %s (%s)", kind.pod_noun, name, plan.reasons[name])
            await self.delete(name)
        if time.monotonic() < self._create_after:
            plan = decisions.PoolPlan(create=0)
        for _ in range(plan.create):
            name = kind.new_pod_name()
            task = asyncio.create_task(self._start_warm(name))
            self._starting[name] = task  # counted at once: the next reconcile sees it
            task.add_done_callback(self._started)
        unready = [
            name
            for name, pod in self.pods.items()
            if decisions.is_warm(pod) and name not in self._ready and decisions.pod_address(pod)
        ]
        await asyncio.gather(*(self._probe(name) for name in unready))
        await self._publish()

    def _started(self, task: asyncio.Task[None]) -> None:
        for name, started in list(self._starting.items()):
            if started is task:
                del self._starting[name]

    async def _start_warm(self, name: str) -> None:
        assert self._owner is not None
        log.info("%s pool: starting warm pod %s", self._kind.pod_noun, name)
        try:
            await self._create(name, owner_reference(self._owner), None)
        except (ControllerError, KubernetesError, TemplateMissing) as exc:
            log.warning("%s pool: cannot start a warm pod: %s", self._kind.pod_noun, exc)

    async def _create(
        self, name: str, owner: dict[str, Any], session: str | None
    ) -> dict[str, Any]:
        """The pod, which knows only its token's digest, then the Secret with the token.

        The pod first: the Secret is owned by it, so a crash between the two leaves a pod
        that never answers (the pool removes it) and never a Secret on its own.
        """
        kind = self._kind
        template = await self._template()
        assert self._owner is not None
        token = new_token()
        manifest = kind.pod(self._owner, name, bearer.digest(token).hex(), owner, session)
        try:
            created = await self._api.create_pod(manifest, what=f"{kind.pod_noun} pod")
            if template.user_namespace and created.get("spec", {}).get("hostUsers") is not False:
                # An API server without user namespaces for pods drops the field silently:
                # the pod's own sandbox would then make its namespaces on the node itself.
                raise KubeForbidden(
                    "the cluster does not give pods user namespaces (hostUsers: false was "
                    f"dropped); {kind.pod_noun} pods are refused rather than run without them"
                )
            await self._api.create_secret(token_secret(created, token))
        except BaseException:
            with contextlib.suppress(KubernetesError):
                await asyncio.shield(self.delete(name))
            raise
        self._tokens[name] = token
        self.pods.setdefault(name, created)
        return created

    async def _probe(self, name: str) -> bool:
        """Whether the pod's agent answers /health with the pod's token."""
        pod = self.pods.get(name)
        address = decisions.pod_address(pod) if pod else None
        if address is None:
            return False
        try:
            handle = AgentHandle(name, self._kind.endpoint(address), await self.token(name))
            await self._agents.request(
                handle,
                "GET",
                self._kind.health_path,
                timeout_s=HEALTH_TIMEOUT_S,
                max_bytes=SMALL_REPLY_BYTES,
            )
        except (ControllerError, KubernetesError):  # its Secret unreadable, or no answer
            return False
        if name in self.pods:
            self._ready.add(name)
            self._failures = 0
        return True

    async def _publish(self) -> None:
        """The pool's state on its ConfigMap, for the controllers (one write per change)."""
        ready = len(self._warm_ready())
        if ready == self._published:
            return
        await self._api.patch_config_map(self._kind.pool_owner, {"data": {"warmReady": str(ready)}})
        self._published = ready

    # --- sessions' pods -----------------------------------------------------------------

    async def token(self, name: str) -> str:
        token = self._tokens.get(name)
        if token is None:
            token = secret_token(await self._api.read_secret(name))
            self._tokens[name] = token
        return token

    def pod_of(self, session: str) -> dict[str, Any] | None:
        for pod in self.pods.values():
            if decisions.session_of(pod) == session:
                return pod
        return None

    async def claim(self, session: dict[str, Any]) -> dict[str, Any] | None:
        """A ready warm pod, now the session's; None when there is none.

        Each candidate is taken out of the ready set before any wait, and the claim names
        the version read while it was warm: if anything (another session) wrote the pod
        since, the API server refuses the claim (409) and the next candidate is tried.
        """
        await self._template()  # the current one: a pod of an older one is not handed out
        snapshots = [copy.deepcopy(self.pods[name]) for name in self._warm_ready()]
        for warm in snapshots:
            name = warm["metadata"]["name"]
            if name not in self._ready:
                continue  # taken by a concurrent claim meanwhile
            self._ready.discard(name)
            # The quiet starts before the patch: the watch may report the claimed pod
            # (and the pool see one warm pod fewer) before the patch's own answer.
            self._create_after = max(self._create_after, time.monotonic() + CLAIM_QUIET_S)
            try:
                claimed = await self._api.patch_pod(name, claim_patch(warm, session))
            except (KubeConflict, KubeNotFound):
                continue  # changed or gone since it was read: never two sessions on one pod
            self.pods[name] = claimed
            self._ready.add(name)
            return claimed  # the pool refills at its first reconcile after the quiet
        return None

    async def start_for(self, session: dict[str, Any]) -> dict[str, Any]:
        """A pod of the session's own (cold start), owned by it."""
        name = self._kind.new_pod_name()
        return await self._create(name, owner_reference(session), session["metadata"]["name"])

    async def until_ready(self, name: str) -> str:
        """Wait until the pod's agent answers; its endpoint.  PodFailed if it cannot."""
        kind = self._kind
        deadline = time.monotonic() + kind.start_timeout_s
        while True:
            pod = self.pods.get(name)
            if pod is None:
                raise PodFailed(f"its {kind.pod_noun} pod {name} is gone")
            failure = decisions.pod_failure(pod, what=kind.pod_noun)
            if failure is not None:
                raise PodFailed(failure)
            if name in self._ready or await self._probe(name):
                address = decisions.pod_address(pod)
                if address is not None:
                    return kind.endpoint(address)
            if time.monotonic() >= deadline:
                raise PodFailed(
                    f"its {kind.pod_noun} pod {name} was not ready within "
                    f"{kind.start_timeout_s:.0f}s (setting {kind.start_setting})"
                )
            await self._next_change(0.5)

    async def delete(self, name: str) -> None:
        """The pod and its Secret (404 is done)."""
        self._ready.discard(name)
        await self._api.delete_pod(name, grace_s=5)
        await self._api.delete_secret(name)
