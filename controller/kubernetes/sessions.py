"""Browser sessions on Kubernetes, as the controller serves them: BrowserSession resources.

Creating a session creates a BrowserSession and waits until the operator reports it
Ready (a pod whose browser is configured for the device, its endpoint, the Secret with
its token); every call then goes straight to that pod over HTTP with the token.  What
the controller knows of sessions is an informer's cache of the namespace's
BrowserSessions (list, then watch from it), so any replica serves any session and a
restarted replica serves them at once.  Use is never written to the API server: the
agent keeps its idle clock, and the operator reads it when it enforces the idle timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from controller.browser.backend import AgentHandle
from controller.browser.client import AgentClient
from controller.browser.models import CreatedSession, CreateSessionRequest, SessionInfo, Viewport
from controller.browser.service import (
    check_capacity,
    checked_timeouts,
    not_found,
    session_network,
)
from controller.browser.sessions import is_session_id, new_session_id
from controller.errors import (
    AgentRefused,
    BadGateway,
    BrowserUnavailable,
    GatewayTimeout,
    Gone,
    NotFound,
)
from controller.keys import DEFAULT_KEY, Caller
from controller.kubernetes.api import (
    Absent,
    CustomResource,
    KubeApi,
    KubernetesUnavailable,
    ObjectWatch,
    load_client,
)
from controller.kubernetes.browser_manifests import (
    EXPIRED,
    FAILED,
    GROUP,
    KIND,
    PLURAL,
    READY,
    VERSION,
    browser_session,
    parse_time,
    secret_token,
)
from controller.kubernetes.manifests import LABEL_KEY
from controller.settings import Settings

log = logging.getLogger(__name__)

SESSIONS = CustomResource(GROUP, VERSION, PLURAL, KIND)
FIRST_LIST_TIMEOUT_S = 30.0
POOL_REFRESH_S = 5.0


def session_info(body: dict[str, Any]) -> SessionInfo:
    """The public record of a Ready BrowserSession (pure: what its resource says)."""
    meta, spec, status = body["metadata"], body.get("spec") or {}, body.get("status") or {}
    created = parse_time(meta.get("creationTimestamp")) or datetime.now(UTC)
    last_used = parse_time(status.get("lastUsedAt")) or parse_time(status.get("readyAt"))
    last_used = last_used or created
    idle, lifetime = int(spec["idleTimeoutS"]), int(spec["maxLifetimeS"])
    viewport = status.get("viewport")
    return SessionInfo(
        sessionId=meta["name"],
        device=str(status.get("device") or spec.get("device") or ""),
        viewport=Viewport(**viewport) if isinstance(viewport, dict) else None,
        userAgent=str(status.get("userAgent") or ""),
        isMobile=bool(status.get("isMobile")),
        labels=dict(spec.get("labels") or {}),
        createdAt=created,
        lastUsedAt=last_used,
        expiresAt=min(created + timedelta(seconds=lifetime), last_used + timedelta(seconds=idle)),
        idleTimeoutS=idle,
        maxLifetimeS=lifetime,
    )


def refusal(body: dict[str, Any]) -> AgentRefused | BrowserUnavailable:
    """Why a session failed to open, as the error its creator gets."""
    status = body.get("status") or {}
    error = status.get("error")
    if isinstance(error, dict) and isinstance(error.get("status"), int):
        code = error["status"]
        if 400 <= code < 500:
            details = error.get("details")
            return AgentRefused(
                code,
                str(error.get("code") or "refused"),
                str(error.get("message") or status.get("reason") or ""),
                details if isinstance(details, list) else None,
            )
    return BrowserUnavailable(f"the browser session could not start: {status.get('reason')}")


class ResourceSession:
    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body

    def info(self) -> SessionInfo:
        return session_info(self.body)


def owner_of(body: dict[str, Any]) -> str:
    """The name of the key whose session this is (before keys: AUTH_TOKEN's)."""
    return str((body["metadata"].get("labels") or {}).get(LABEL_KEY, DEFAULT_KEY))


class KubernetesSessions:
    """Sessions as BrowserSession resources in BROWSER_NAMESPACE (the operator's)."""

    def __init__(self, settings: Settings, client: AgentClient, api: KubeApi | None = None) -> None:
        self.settings = settings
        self.client = client
        self._api = api
        self._cache: dict[str, dict[str, Any]] = {}
        self._listed = asyncio.Event()
        self._changed: dict[str, asyncio.Event] = {}
        self._tokens: dict[str, str] = {}
        self._creating = 0
        self._creating_by: Counter[str] = Counter()
        self._watch: ObjectWatch | None = None
        self._warm = 0
        self._warm_read = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._background: set[asyncio.Task[None]] = set()

    @property
    def warm_agents(self) -> int:
        return self._warm

    async def start(self) -> None:
        if self._api is None:
            self._api = KubeApi(load_client(), self.settings.browser_namespace)
        self._loop = asyncio.get_running_loop()
        self._watch = self._api.watch_custom(SESSIONS, self._from_thread_list, self._from_thread)
        try:
            async with asyncio.timeout(FIRST_LIST_TIMEOUT_S):
                await self._listed.wait()
        except TimeoutError:
            log.error("no list of BrowserSessions within %.0fs", FIRST_LIST_TIMEOUT_S)
        await self._refresh_pool()

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.stop()
        await self.client.close()

    # --- the informer (its callbacks come from the watch's thread) ----------------------

    def _from_thread_list(self, items: list[dict[str, Any]]) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._replace, items)

    def _from_thread(self, event_type: str, body: dict[str, Any]) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._apply, event_type, body)

    def _replace(self, items: list[dict[str, Any]]) -> None:
        self._cache = {item["metadata"]["name"]: item for item in items}
        secrets = {str((item.get("status") or {}).get("tokenSecret")) for item in items}
        self._tokens = {k: v for k, v in self._tokens.items() if k in secrets}
        self._listed.set()
        for event in self._changed.values():
            event.set()

    def _apply(self, event_type: str, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        if event_type == "DELETED":
            self._cache.pop(name, None)
            self._tokens.pop(str((body.get("status") or {}).get("tokenSecret")), None)
        else:
            self._cache[name] = body
        event = self._changed.get(name)
        if event is not None:
            event.set()

    # --- sessions -----------------------------------------------------------------------

    def _open(self) -> list[dict[str, Any]]:
        """Sessions open or being opened, across replicas (this one's creations aside)."""
        return [
            body
            for name, body in self._cache.items()
            if name not in self._changed
            and not body["metadata"].get("deletionTimestamp")
            and (body.get("status") or {}).get("phase") not in (FAILED, EXPIRED)
        ]

    async def create(self, request: CreateSessionRequest, caller: Caller) -> CreatedSession:
        idle, lifetime = checked_timeouts(self.settings, request)
        network = session_network(self.settings, request)
        open_now = self._open()
        own = sum(1 for body in open_now if owner_of(body) == caller.name)
        own += self._creating_by[caller.name]
        check_capacity(self.settings, len(open_now) + self._creating, caller, own)
        assert self._api is not None
        name = new_session_id()
        changed = self._changed[name] = asyncio.Event()
        self._creating += 1
        self._creating_by[caller.name] += 1
        try:
            manifest = browser_session(
                name,
                request.device,
                idle,
                lifetime,
                dict(request.labels),
                network.model_dump(),
                caller.name,
            )
            await self._api.create_custom(SESSIONS, manifest)
            try:
                body = await self._until_settled(name, changed)
                phase = (body.get("status") or {}).get("phase")
                if phase != READY:
                    raise refusal(body)
                await self._token(body)  # read now, kept for the calls
            except BaseException:
                # Refused, timed out, or the caller went away: nobody will use it.
                await asyncio.shield(self._delete_quietly(name))
                raise
        finally:
            self._creating -= 1
            self._creating_by[caller.name] -= 1
            self._changed.pop(name, None)
        info = session_info(body)
        log.info("browser session %s opened (%s)", name, info.device)
        return CreatedSession(**info.model_dump(), tabId=str(body["status"].get("tabId") or "t1"))

    async def _until_settled(self, name: str, changed: asyncio.Event) -> dict[str, Any]:
        timeout_s = self.settings.browser_session_start_timeout_s
        deadline = time.monotonic() + timeout_s
        while True:
            body = self._cache.get(name)
            if body is not None and (body.get("status") or {}).get("phase") in (
                READY,
                FAILED,
                EXPIRED,
            ):
                return body
            left = deadline - time.monotonic()
            if left <= 0:
                reason = ((body or {}).get("status") or {}).get("reason")
                raise BrowserUnavailable(
                    f"browser session {name} was not ready within {timeout_s:.0f}s "
                    "(setting BROWSER_SESSION_START_TIMEOUT_S)"
                    + (f": {reason}" if reason else "; is the operator running?")
                )
            changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await changed.wait()

    async def _delete_quietly(self, name: str) -> None:
        assert self._api is not None
        try:
            await self._api.delete_custom(SESSIONS, name)
        except KubernetesUnavailable as exc:
            log.warning("%s", exc)

    async def _token(self, body: dict[str, Any]) -> str:
        secret = str((body.get("status") or {}).get("tokenSecret") or "")
        token = self._tokens.get(secret)
        if token is None:
            assert self._api is not None
            try:
                token = secret_token(await self._api.read_secret(secret))
            except Absent:
                raise Gone(
                    f"browser session {body['metadata']['name']} lost its token Secret"
                ) from None
            self._tokens[secret] = token
        return token

    async def _resource(self, session_id: str, caller: Caller) -> dict[str, Any]:
        """The caller's session's resource, in whatever phase; NotFound if there is none.

        A session this replica's cache has not seen yet (another replica created it a
        moment ago) is read from the API server.
        """
        if not is_session_id(session_id):  # no name the API server would even accept
            raise not_found(session_id)
        body = self._cache.get(session_id)
        if body is None or (body.get("status") or {}).get("phase") not in (READY, FAILED, EXPIRED):
            assert self._api is not None
            try:
                body = await self._api.read_custom(SESSIONS, session_id)
            except Absent:
                body = None
        if body is None or body["metadata"].get("deletionTimestamp"):
            raise not_found(session_id)
        if owner_of(body) != caller.name:
            raise not_found(session_id)  # another caller's: as if it did not exist
        return body

    async def _body(self, session_id: str, caller: Caller) -> dict[str, Any]:
        """The caller's session's resource if it is usable; the right error if not."""
        body = await self._resource(session_id, caller)
        status = body.get("status") or {}
        phase = status.get("phase")
        if phase == FAILED:
            raise Gone(f"browser session {session_id!r} failed: {status.get('reason')}")
        if phase == EXPIRED:
            raise NotFound(f"browser session {session_id!r} expired: {status.get('reason')}")
        if phase != READY:
            raise NotFound(f"browser session {session_id!r} is still starting")
        return body

    async def find(self, session_id: str, caller: Caller) -> ResourceSession:
        return ResourceSession(await self._body(session_id, caller))

    def list(self, caller: Caller | None = None) -> list[SessionInfo]:
        infos = []
        for body in self._cache.values():
            if (
                (body.get("status") or {}).get("phase") == READY
                and not body["metadata"].get("deletionTimestamp")
                and (caller is None or owner_of(body) == caller.name)
            ):
                infos.append(session_info(body))
        self._refresh_soon()
        return sorted(infos, key=lambda info: info.createdAt)

    def _refresh_soon(self) -> None:
        if time.monotonic() - self._warm_read > POOL_REFRESH_S and self._loop is not None:
            self._warm_read = time.monotonic()
            task = self._loop.create_task(self._refresh_pool())
            self._background.add(task)  # kept: the loop holds only weak references
            task.add_done_callback(self._background.discard)

    async def _refresh_pool(self) -> None:
        """The warm pods' count, as the operator publishes it on the pool's ConfigMap."""
        assert self._api is not None
        try:
            pool = await self._api.read_config_map(self.settings.browser_pool_owner)
            self._warm = int((pool.get("data") or {}).get("warmReady", "0"))
        except (KubernetesUnavailable, ValueError) as exc:
            log.debug("browser pool state unknown: %s", exc)
        self._warm_read = time.monotonic()

    async def delete(self, session_id: str, caller: Caller) -> None:
        assert self._api is not None
        await self._resource(session_id, caller)  # the caller's, or 404
        if not await self._api.delete_custom(SESSIONS, session_id):
            raise not_found(session_id)
        self._cache.pop(session_id, None)
        log.info("browser session %s closed (deleted)", session_id)

    async def call(
        self,
        session_id: str,
        caller: Caller,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        timeout_s: float = 30.0,
    ) -> httpx.Response:
        body = await self._body(session_id, caller)
        status = body["status"]
        handle = AgentHandle(str(status["pod"]), str(status["endpoint"]), await self._token(body))
        try:
            return await self.client.request(
                handle, method, path, json=json, params=params, timeout_s=timeout_s
            )
        except (BadGateway, GatewayTimeout):
            await self._body(session_id, caller)  # failed or gone meanwhile: say so (410, 404)
            raise
