"""Browser sessions on Kubernetes, as the controller serves them: BrowserSession resources.

Creating a session creates a BrowserSession and waits until the operator reports it
Ready (a pod whose browser is configured for the device, its endpoint, the Secret with
its token); every call then goes straight to that pod over HTTP with the token.  What
the controller knows of sessions is an informer's cache of the namespace's
BrowserSessions (controller.kubernetes.informer), so any replica serves any session and
a restarted replica serves them at once.  Use is never written to the API server: the
agent keeps its idle clock, and the operator reads it when it enforces the idle timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from controller.browser.backend import AgentHandle
from controller.browser.client import AgentClient
from controller.browser.models import CreatedSession, CreateSessionRequest, SessionInfo, Viewport
from controller.browser.service import (
    browser_kind,
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
from controller.keys import Caller
from controller.kubernetes.api import (
    KubeApi,
    KubeNotFound,
    KubernetesError,
    load_client,
)
from controller.kubernetes.browser_manifests import browser_session
from controller.kubernetes.informer import SessionResources
from controller.kubernetes.resources import BROWSER_SESSIONS, BrowserSessionResource
from controller.kubernetes.session_pods import EXPIRED, FAILED, READY
from controller.settings import Settings

log = logging.getLogger(__name__)

SESSIONS = BROWSER_SESSIONS
POOL_REFRESH_S = 5.0


def session_info(session: BrowserSessionResource) -> SessionInfo:
    """The public record of a Ready BrowserSession (pure: what its resource says)."""
    status = session.status
    return SessionInfo(
        sessionId=session.name,
        device=status.device or session.device,
        viewport=Viewport(**status.viewport) if status.viewport else None,
        userAgent=status.user_agent,
        isMobile=status.is_mobile,
        labels=dict(session.labels),
        createdAt=session.created,
        lastUsedAt=session.last_used_at,
        expiresAt=session.expires_at,
        idleTimeoutS=session.idle_timeout_s,
        maxLifetimeS=session.max_lifetime_s,
    )


def refusal(session: BrowserSessionResource) -> AgentRefused | BrowserUnavailable:
    """Why a session failed to open, as the error its creator gets."""
    error = session.status.error
    if error is not None and 400 <= error.status < 500:
        return AgentRefused(
            error.status, error.code, error.message or session.status.reason or "", error.details
        )
    return BrowserUnavailable(f"the browser session could not start: {session.status.reason}")


class ResourceSession:
    def __init__(self, session: BrowserSessionResource) -> None:
        self.session = session

    def info(self) -> SessionInfo:
        return session_info(self.session)


@contextlib.contextmanager
def browser_errors() -> Iterator[None]:
    """The Kubernetes API's failures as browser calls report them: the one place where
    they become the product's error (503 ``browser_unavailable``, the cause in its
    message), never ``sandbox_unavailable``."""
    try:
        yield
    except KubernetesError as exc:
        raise BrowserUnavailable(exc.message) from exc


class KubernetesSessions:
    """Sessions as BrowserSession resources in BROWSER_NAMESPACE (the operator's)."""

    def __init__(self, settings: Settings, client: AgentClient, api: KubeApi | None = None) -> None:
        self.settings = settings
        self.client = client
        self._api = api
        self._resources: SessionResources[BrowserSessionResource] | None = None
        self._warm = 0
        self._warm_read = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._background: set[asyncio.Task[None]] = set()

    @property
    def warm_agents(self) -> int:
        return self._warm

    @property
    def resources(self) -> SessionResources[BrowserSessionResource]:
        if self._resources is None:
            if self._api is None:
                self._api = KubeApi(load_client(), self.settings.browser_namespace)
            self._resources = SessionResources(self._api, SESSIONS, BrowserSessionResource.parse)
        return self._resources

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.resources.start()
        await self._refresh_pool()

    async def stop(self) -> None:
        if self._resources is not None:
            self._resources.stop()
        await self.client.close()

    # --- sessions -----------------------------------------------------------------------

    async def create(self, request: CreateSessionRequest, caller: Caller) -> CreatedSession:
        with browser_errors():
            return await self._create(request, caller)

    async def _create(self, request: CreateSessionRequest, caller: Caller) -> CreatedSession:
        idle, lifetime = checked_timeouts(self.settings, request)
        network = session_network(self.settings, request)
        resources = self.resources
        name = new_session_id()
        with resources.creating(name, caller, browser_kind(self.settings)):
            manifest = browser_session(
                name,
                request.device,
                idle,
                lifetime,
                dict(request.labels),
                network.model_dump(),
                caller.name,
            )
            await resources.api.create_custom(SESSIONS, manifest)
            try:
                session = await resources.until_settled(
                    name, self.settings.browser_session_start_timeout_s, self._late(name)
                )
                if session.phase != READY:
                    raise refusal(session)
                await self._token(session)  # read now, kept for the calls
            except BaseException:
                # Refused, timed out, or the caller went away: nobody will use it.
                await asyncio.shield(resources.delete_quietly(name))
                raise
        info = session_info(session)
        log.info("browser session %s opened (%s)", name, info.device)
        return CreatedSession(**info.model_dump(), tabId=session.status.tab_id)

    def _late(self, name: str) -> Callable[[BrowserSessionResource | None], Exception]:
        timeout_s = self.settings.browser_session_start_timeout_s

        def late(session: BrowserSessionResource | None) -> Exception:
            reason = session.status.reason if session is not None else None
            return BrowserUnavailable(
                f"browser session {name} was not ready within {timeout_s:.0f}s "
                "(setting BROWSER_SESSION_START_TIMEOUT_S)"
                + (f": {reason}" if reason else "; is the operator running?")
            )

        return late

    async def _token(self, session: BrowserSessionResource) -> str:
        try:
            return await self.resources.token(session)
        except KubeNotFound:
            raise Gone(f"browser session {session.name} lost its token Secret") from None

    async def _resource(self, session_id: str, caller: Caller) -> BrowserSessionResource:
        """The caller's session's resource, in whatever phase; NotFound if there is none.

        A session this replica's cache has not seen yet (another replica created it a
        moment ago) is read from the API server.
        """
        if not is_session_id(session_id):  # no name the API server would even accept
            raise not_found(session_id)
        session = await self.resources.read(session_id)
        if session is None or session.owner != caller.name:
            raise not_found(session_id)  # another caller's: as if it did not exist
        return session

    async def _usable(self, session_id: str, caller: Caller) -> BrowserSessionResource:
        """The caller's session's resource if it is usable; the right error if not."""
        session = await self._resource(session_id, caller)
        reason = session.status.reason
        if session.phase == FAILED:
            raise Gone(f"browser session {session_id!r} failed: {reason}")
        if session.phase == EXPIRED:
            raise NotFound(f"browser session {session_id!r} expired: {reason}")
        if session.phase != READY:
            raise NotFound(f"browser session {session_id!r} is still starting")
        return session

    async def find(self, session_id: str, caller: Caller) -> ResourceSession:
        with browser_errors():
            return ResourceSession(await self._usable(session_id, caller))

    def list(self, caller: Caller | None = None) -> list[SessionInfo]:
        infos = [
            session_info(session)
            for session in self.resources.cache.values()
            if session.phase == READY
            and not session.deleting
            and (caller is None or session.owner == caller.name)
        ]
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
        try:
            pool = await self.resources.api.read_config_map(self.settings.browser_pool_owner)
            self._warm = int((pool.get("data") or {}).get("warmReady", "0"))
        except (KubernetesError, ValueError) as exc:
            log.debug("browser pool state unknown: %s", exc)
        self._warm_read = time.monotonic()

    async def delete(self, session_id: str, caller: Caller) -> None:
        with browser_errors():
            await self._resource(session_id, caller)  # the caller's, or 404
            if not await self.resources.api.delete_custom(SESSIONS, session_id):
                raise not_found(session_id)
        self.resources.forget(session_id)
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
        with browser_errors():
            session = await self._usable(session_id, caller)
            token = await self._token(session)
        status = session.status
        handle = AgentHandle(str(status.pod), str(status.endpoint), token)
        try:
            return await self.client.request(
                handle, method, path, json=json, params=params, timeout_s=timeout_s
            )
        except (BadGateway, GatewayTimeout):
            with browser_errors():  # failed or gone meanwhile: say so (410, 404)
                await self._usable(session_id, caller)
            raise
