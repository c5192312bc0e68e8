"""The one module that calls the Kubernetes API: off the event loop, errors wrapped here.

The ``kubernetes`` client is synchronous, so every call runs on a thread pool of its own
(never the loop's default one, which other work shares).  Its failures are classed by
cause at this edge, each message naming what an operator can act on:

    KubernetesError           any failure of a call (``status``: the API server's, if any)
    +-- KubeNotFound          404: the object is not there
    +-- KubeConflict          409: it exists already, or was written since it was read
    +-- KubeForbidden         403: RBAC or admission refused it (trying again will not help)
    |   +-- KubeQuotaExceeded 403: the namespace's ResourceQuota is full (retry later)
    +-- KubeUnavailable       the API server is unreachable, or failed (5xx, timeouts)

They are not the product's errors: each placement maps them to its own once (executions:
``sandbox_unavailable``; browser sessions: ``browser_unavailable``).  A 404 on delete is
success (delete, and treat 404 as done).  Responses are read as plain JSON (the client's
model classes cost milliseconds per object).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from controller.kubernetes.session_pods import CustomResource

log = logging.getLogger(__name__)

T = TypeVar("T")
REQUEST_TIMEOUT_S = 15.0
WATCH_TIMEOUT_S = 240
THREADS = 16


class KubernetesError(Exception):
    """A call to the API server failed; the message says which call and why."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class KubeNotFound(KubernetesError):
    """The object is not there (404)."""


class KubeConflict(KubernetesError):
    """The object exists already, or a write named a resourceVersion that is no longer
    current: someone wrote first (409)."""


class KubeForbidden(KubernetesError):
    """RBAC or an admission rule refused the call: trying again will not help (403)."""


class KubeQuotaExceeded(KubeForbidden):
    """The namespace's ResourceQuota is full: a later try may fit (403)."""


class KubeUnavailable(KubernetesError):
    """The API server is unreachable, timed out or failed (5xx)."""


def _reason(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or "{}")
    except ValueError:
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    return str(message or exc.reason or exc.status)


def wrap(what: str, exc: Exception, quota: str = "sandbox.quota") -> KubernetesError:
    """A failed call as its cause (``quota``: the chart value that sizes the namespace's
    ResourceQuota, which the message names)."""
    if not isinstance(exc, ApiException):
        return KubeUnavailable(f"{what}: the API server is unreachable: {exc}")
    reason, status = _reason(exc), exc.status
    if status == 404:
        return KubeNotFound(f"{what}: not found: {reason}", status)
    if status == 409:
        return KubeConflict(f"{what}: conflict: {reason}", status)
    if status == 403 and "exceeded quota" in reason:
        return KubeQuotaExceeded(
            f"{what}: the namespace's ResourceQuota is full ({reason}); retry later, or "
            f"raise the quota (chart value {quota})",
            status,
        )
    if status == 403:
        return KubeForbidden(f"{what}: forbidden by RBAC or admission: {reason}", status)
    if status == 422 or status == 400:  # a manifest the API server refuses: ours is wrong
        return KubeForbidden(f"{what}: refused as invalid: {reason}", status)
    return KubeUnavailable(f"{what}: the API server answered {status}: {reason}", status)


def load_client() -> client.ApiClient:
    """In a pod, its service account; elsewhere, the kubeconfig (KUBECONFIG or ~/.kube)."""
    try:
        config.load_incluster_config()
        return client.ApiClient()
    except config.ConfigException:
        pass
    try:
        loaded: client.ApiClient = config.new_client_from_config()
    except (config.ConfigException, OSError) as exc:
        raise KubeUnavailable(
            f"no Kubernetes configuration: not in a pod, and no usable kubeconfig ({exc})"
        ) from exc
    return loaded


class KubeApi:
    """The calls the backend makes, in one namespace, each awaitable."""

    def __init__(self, api: client.ApiClient, namespace: str, quota: str = "sandbox.quota") -> None:
        self.namespace = namespace
        self._quota = quota
        self._api = api
        self._core = client.CoreV1Api(api)
        self._leases = client.CoordinationV1Api(api)
        self._custom = client.CustomObjectsApi(api)
        self._pool = ThreadPoolExecutor(THREADS, thread_name_prefix="kubernetes")

    async def _call(self, what: str, call: Callable[[], T]) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, call)
        except (ApiException, HTTPError, OSError) as exc:
            raise wrap(what, exc, self._quota) from exc

    def _json(self, response: Any) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(response.data)
        return value

    async def create_pod(
        self, manifest: dict[str, Any], what: str = "runner pod"
    ) -> dict[str, Any]:
        return await self._call(
            f"cannot create {what} {manifest['metadata']['name']}",
            lambda: self._json(
                self._core.create_namespaced_pod(
                    self.namespace,
                    cast(Any, manifest),  # the client takes plain dicts too
                    _preload_content=False,
                    _request_timeout=REQUEST_TIMEOUT_S,
                )
            ),
        )

    async def delete_pod(self, name: str, grace_s: int = 0) -> None:
        """Delete (by default now: a runner pod has nothing to finish); 404 is done."""

        def delete() -> None:
            try:
                self._core.delete_namespaced_pod(
                    name,
                    self.namespace,
                    grace_period_seconds=grace_s,
                    _preload_content=False,
                    _request_timeout=REQUEST_TIMEOUT_S,
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise

        await self._call(f"cannot delete runner pod {name}", delete)

    async def label_pod(self, name: str, patch: dict[str, Any]) -> None:
        await self._call(
            f"cannot label runner pod {name}",
            lambda: self._core.patch_namespaced_pod(
                name,
                self.namespace,
                patch,
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT_S,
            ),
        )

    async def patch_pod(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """A merge patch; KubeConflict when it names a resourceVersion that is not current."""
        return await self._call(
            f"cannot patch pod {name}",
            lambda: self._json(
                self._core.patch_namespaced_pod(
                    name,
                    self.namespace,
                    patch,
                    _preload_content=False,
                    _request_timeout=REQUEST_TIMEOUT_S,
                    _content_type="application/merge-patch+json",
                )
            ),
        )

    async def create_secret(self, manifest: dict[str, Any]) -> dict[str, Any]:
        return await self._call(
            f"cannot create secret {manifest['metadata']['name']}",
            lambda: self._json(
                self._core.create_namespaced_secret(
                    self.namespace,
                    cast(Any, manifest),
                    _preload_content=False,
                    _request_timeout=REQUEST_TIMEOUT_S,
                )
            ),
        )

    async def read_secret(self, name: str) -> dict[str, Any]:
        """The Secret; KubeNotFound when there is none."""
        return await self._call(
            f"cannot read secret {name}",
            lambda: self._json(
                self._core.read_namespaced_secret(
                    name, self.namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT_S
                )
            ),
        )

    async def delete_secret(self, name: str) -> None:
        """404 is done."""

        def delete() -> None:
            try:
                self._core.delete_namespaced_secret(
                    name, self.namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT_S
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise

        await self._call(f"cannot delete secret {name}", delete)

    async def read_config_map(self, name: str) -> dict[str, Any]:
        """The ConfigMap; KubeNotFound when there is none."""
        return await self._call(
            f"cannot read config map {name}",
            lambda: self._json(
                self._core.read_namespaced_config_map(
                    name, self.namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT_S
                )
            ),
        )

    async def patch_config_map(self, name: str, patch: dict[str, Any]) -> None:
        await self._call(
            f"cannot patch config map {name}",
            lambda: self._core.patch_namespaced_config_map(
                name,
                self.namespace,
                patch,
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT_S,
                _content_type="application/merge-patch+json",
            ),
        )

    async def create_custom(self, resource: CustomResource, manifest: dict[str, Any]) -> None:
        await self._call(
            f"cannot create {resource.kind} {manifest['metadata']['name']}",
            lambda: self._custom.create_namespaced_custom_object(
                resource.group,
                resource.version,
                self.namespace,
                resource.plural,
                manifest,
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT_S,
            ),
        )

    async def list_custom(self, resource: CustomResource) -> list[dict[str, Any]]:
        response = await self._call(
            f"cannot list {resource.plural}",
            lambda: self._json(
                self._custom.list_namespaced_custom_object(
                    resource.group,
                    resource.version,
                    self.namespace,
                    resource.plural,
                    _preload_content=False,
                    _request_timeout=REQUEST_TIMEOUT_S,
                )
            ),
        )
        items: list[dict[str, Any]] = response.get("items") or []
        return items

    async def patch_custom_status(
        self, resource: CustomResource, name: str, status: dict[str, Any]
    ) -> None:
        await self._call(
            f"cannot update the status of {resource.kind} {name}",
            lambda: self._custom.patch_namespaced_custom_object_status(
                resource.group,
                resource.version,
                self.namespace,
                resource.plural,
                name,
                {"status": status},
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT_S,
                _content_type="application/merge-patch+json",
            ),
        )

    async def read_custom(self, resource: CustomResource, name: str) -> dict[str, Any]:
        """The object; KubeNotFound when there is none."""
        return await self._call(
            f"cannot read {resource.kind} {name}",
            lambda: self._json(
                self._custom.get_namespaced_custom_object(
                    resource.group,
                    resource.version,
                    self.namespace,
                    resource.plural,
                    name,
                    _preload_content=False,
                    _request_timeout=REQUEST_TIMEOUT_S,
                )
            ),
        )

    async def delete_custom(self, resource: CustomResource, name: str) -> bool:
        """Delete; False when it was not there (404 is done, but the caller may care)."""

        def delete() -> bool:
            try:
                self._custom.delete_namespaced_custom_object(
                    resource.group,
                    resource.version,
                    self.namespace,
                    resource.plural,
                    name,
                    propagation_policy="Background",
                    _preload_content=False,
                    _request_timeout=REQUEST_TIMEOUT_S,
                )
            except ApiException as exc:
                if exc.status == 404:
                    return False
                raise
            return True

        return await self._call(f"cannot delete {resource.kind} {name}", delete)

    def watch_custom(
        self,
        resource: CustomResource,
        on_list: Callable[[list[dict[str, Any]]], None],
        on_event: Callable[[str, dict[str, Any]], None],
    ) -> ObjectWatch:
        """An informer of the namespace's ``resource`` objects (list, then watch from it)."""
        return ObjectWatch(
            lambda **kw: self._custom.list_namespaced_custom_object(
                resource.group, resource.version, self.namespace, resource.plural, **kw
            ),
            resource.kind,
            on_event,
            on_list,
        )

    async def list_pods(self, selector: str = "", fields: str = "") -> list[dict[str, Any]]:
        """Pods by label selector and/or field selector (e.g. ``metadata.name=x``)."""
        response = await self._call(
            "cannot list runner pods",
            lambda: self._json(
                self._core.list_namespaced_pod(
                    self.namespace,
                    label_selector=selector,
                    field_selector=fields,
                    _preload_content=False,
                    _request_timeout=REQUEST_TIMEOUT_S,
                )
            ),
        )
        items: list[dict[str, Any]] = response.get("items") or []
        return items

    async def create_lease(self, manifest: dict[str, Any]) -> dict[str, Any]:
        return await self._call(
            "cannot create this replica's lease",
            lambda: self._json(
                self._leases.create_namespaced_lease(
                    self.namespace,
                    cast(Any, manifest),
                    _preload_content=False,
                    _request_timeout=REQUEST_TIMEOUT_S,
                )
            ),
        )

    async def renew_lease(self, name: str, renew_time: str) -> bool:
        """Write the lease's renewTime; False when the lease is gone (404)."""

        def renew() -> bool:
            try:
                self._leases.patch_namespaced_lease(
                    name,
                    self.namespace,
                    {"spec": {"renewTime": renew_time}},
                    _preload_content=False,
                    _request_timeout=REQUEST_TIMEOUT_S,
                )
            except ApiException as exc:
                if exc.status == 404:
                    return False
                raise
            return True

        return await self._call(f"cannot renew lease {name}", renew)

    async def list_leases(self, selector: str) -> list[dict[str, Any]]:
        response = await self._call(
            "cannot list replica leases",
            lambda: self._json(
                self._leases.list_namespaced_lease(
                    self.namespace,
                    label_selector=selector,
                    _preload_content=False,
                    _request_timeout=REQUEST_TIMEOUT_S,
                )
            ),
        )
        items: list[dict[str, Any]] = response.get("items") or []
        return items

    async def delete_lease(self, name: str) -> None:
        """Delete a lease; the garbage collector removes the pods it owns.  404 is done."""

        def delete() -> None:
            try:
                self._leases.delete_namespaced_lease(
                    name,
                    self.namespace,
                    propagation_policy="Background",
                    _preload_content=False,
                    _request_timeout=REQUEST_TIMEOUT_S,
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise

        await self._call(f"cannot delete lease {name}", delete)

    def watch_pods(
        self, selector: str, on_event: Callable[[str, dict[str, Any]], None]
    ) -> ObjectWatch:
        """Stream the pods of ``selector`` to ``on_event(type, pod)`` from a thread."""
        return ObjectWatch(
            lambda **kw: self._core.list_namespaced_pod(
                self.namespace, label_selector=selector, **kw
            ),
            "Pod",
            on_event,
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._api.close()


class ObjectWatch:
    """A watch on one kind of object, run in a thread, restarted whenever it ends or fails.

    With ``on_list`` it is an informer: each (re)start lists the objects first, hands
    the whole list over, and watches from that list's resourceVersion, so no change is
    missed across restarts.  Without, only a hint: for runner pods the backend learns
    early that a pod got its address or died; deleting is never decided from it.
    """

    def __init__(
        self,
        list_call: Callable[..., Any],
        kind: str,
        on_event: Callable[[str, dict[str, Any]], None],
        on_list: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> None:
        self._list, self._kind = list_call, kind
        self._on_event, self._on_list = on_event, on_list
        self._stopping = threading.Event()
        self._watch: watch.Watch | None = None
        self._thread = threading.Thread(target=self._run, name=f"watch-{kind}", daemon=True)
        self._thread.start()

    def _events(self) -> Iterator[dict[str, Any]]:
        since: dict[str, Any] = {}
        if self._on_list is not None:
            listing = json.loads(
                self._list(_preload_content=False, _request_timeout=REQUEST_TIMEOUT_S).data
            )
            self._on_list(listing.get("items") or [])
            since["resource_version"] = listing["metadata"]["resourceVersion"]
        self._watch = watch.Watch()
        # A client-side timeout past the server's: a half-open connection (a load
        # balancer's, say) cannot freeze the stream for good.
        yield from self._watch.stream(
            self._list,
            timeout_seconds=WATCH_TIMEOUT_S,
            _request_timeout=WATCH_TIMEOUT_S + 30,
            deserialize=False,
            **since,
        )

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                for event in self._events():
                    obj = event.get("object")
                    if isinstance(obj, dict) and obj.get("kind") == self._kind:
                        self._on_event(str(event.get("type")), obj)
                    if self._stopping.is_set():
                        return
            except (ApiException, HTTPError, OSError, ValueError, KeyError) as exc:
                log.warning("%s watch failed, restarting: %s", self._kind, exc)
                self._stopping.wait(1.0)

    def stop(self) -> None:
        self._stopping.set()
        if self._watch is not None:
            self._watch.stop()
