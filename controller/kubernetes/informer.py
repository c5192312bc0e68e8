"""What a controller replica knows of one kind of session resource: an informer's cache.

The namespace's resources of the kind (BrowserSessions, CodeContexts) are listed, then
watched from that list, and kept parsed (controller.kubernetes.resources), so that any
replica serves any session and a restarted one serves them at once.  A creation under
way is awaited here until the operator settles it (Ready, Failed, Expired); a session
this cache has not seen yet (another replica created it a moment ago) is read from
the API server; the tokens of the sessions' pods are read once and kept while their
sessions are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from controller.keys import Caller
from controller.kubernetes.api import KubeApi, KubeNotFound, KubernetesError, ObjectWatch
from controller.kubernetes.resources import SessionResource
from controller.kubernetes.session_pods import CustomResource, secret_token
from controller.sessions.registry import SessionKind

log = logging.getLogger(__name__)

FIRST_LIST_TIMEOUT_S = 30.0

R = TypeVar("R", bound=SessionResource)


class SessionResources(Generic[R]):
    """The cache of one kind's resources in the API's namespace, kept by a watch."""

    def __init__(
        self, api: KubeApi, resource: CustomResource, parse: Callable[[dict[str, Any]], R]
    ) -> None:
        self.api = api
        self.resource = resource
        self._parse = parse
        self.cache: dict[str, R] = {}
        self._listed = asyncio.Event()
        self._changed: dict[str, asyncio.Event] = {}
        """This replica's creations in flight, by name."""
        self._creating_by: Counter[str] = Counter()
        self._tokens: dict[str, str] = {}
        self._watch: ObjectWatch | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Start watching; return once the first list arrived (or after a while: the
        watch keeps trying, and reads of single resources stand in meanwhile)."""
        self._loop = asyncio.get_running_loop()
        self._watch = self.api.watch_custom(
            self.resource, self._from_thread_list, self._from_thread
        )
        try:
            async with asyncio.timeout(FIRST_LIST_TIMEOUT_S):
                await self._listed.wait()
        except TimeoutError:
            log.error("no list of %ss within %.0fs", self.resource.kind, FIRST_LIST_TIMEOUT_S)

    def stop(self) -> None:
        if self._watch is not None:
            self._watch.stop()

    # --- the watch's callbacks (from its thread) ---------------------------------------

    def _from_thread_list(self, items: list[dict[str, Any]]) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._replace, items)

    def _from_thread(self, event_type: str, body: dict[str, Any]) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._apply, event_type, body)

    def _replace(self, items: list[dict[str, Any]]) -> None:
        parsed = [self._parse(item) for item in items]
        self.cache = {session.name: session for session in parsed}
        secrets = {session.status.token_secret for session in parsed}
        self._tokens = {k: v for k, v in self._tokens.items() if k in secrets}
        self._listed.set()
        for event in self._changed.values():
            event.set()

    def _apply(self, event_type: str, body: dict[str, Any]) -> None:
        session = self._parse(body)
        name = session.name
        if event_type == "DELETED":
            self.cache.pop(name, None)
            self._tokens.pop(session.status.token_secret or "", None)
        else:
            self.cache[name] = session
        event = self._changed.get(name)
        if event is not None:
            event.set()

    # --- reading ------------------------------------------------------------------------

    def open_sessions(self) -> list[R]:
        """Sessions open or being opened, across replicas (this one's creations aside:
        they are counted by whoever creates them)."""
        return [s for name, s in self.cache.items() if name not in self._changed and s.open]

    @contextlib.contextmanager
    def creating(self, name: str, caller: Caller, kind: SessionKind) -> Iterator[None]:
        """While ``name`` is being created by this replica for ``caller``: it counts
        against ``kind``'s caps (429 when one is full: the open sessions of every
        replica, and this one's creations in flight), and ``until_settled`` waits."""
        open_now = self.open_sessions()
        own = sum(1 for session in open_now if session.owner == caller.name)
        own += self._creating_by[caller.name]
        kind.check_capacity(len(open_now) + len(self._changed), caller, own)
        self._changed[name] = asyncio.Event()
        self._creating_by[caller.name] += 1
        try:
            yield
        finally:
            self._changed.pop(name, None)
            self._creating_by[caller.name] -= 1

    async def until_settled(
        self, name: str, timeout_s: float, late: Callable[[R | None], Exception]
    ) -> R:
        """The resource once the operator settled it; ``late(resource)`` is raised
        after ``timeout_s``.  Only for a name under ``creating``."""
        changed = self._changed[name]
        deadline = time.monotonic() + timeout_s
        while True:
            session = self.cache.get(name)
            if session is not None and session.settled:
                return session
            left = deadline - time.monotonic()
            if left <= 0:
                raise late(session)
            changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await changed.wait()

    async def read(self, name: str) -> R | None:
        """The resource, from the cache once settled, else from the API server; None if
        there is none or it is being deleted."""
        session = self.cache.get(name)
        if session is None or not session.settled:
            try:
                session = self._parse(await self.api.read_custom(self.resource, name))
            except KubeNotFound:
                session = None
        if session is None or session.deleting:
            return None
        return session

    async def token(self, session: R) -> str:
        """The token of the session's pod; KubeNotFound if its Secret is gone."""
        secret = session.status.token_secret or ""
        token = self._tokens.get(secret)
        if token is None:
            token = secret_token(await self.api.read_secret(secret))
            self._tokens[secret] = token
        return token

    async def delete_quietly(self, name: str) -> None:
        """Delete a resource nobody will use (a creation that failed), logging a failure
        rather than hiding the one at hand; its pod and Secret go with it."""
        try:
            await self.api.delete_custom(self.resource, name)
        except KubernetesError as exc:
            log.warning("%s", exc)

    def forget(self, name: str) -> None:
        self.cache.pop(name, None)
