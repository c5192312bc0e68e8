"""Code contexts on Kubernetes, as the controller serves them: CodeContext resources.

Opening a context creates a CodeContext and waits until the operator reports it Ready
(a warm runner pod claimed for it, its endpoint, the Secret with its token); the
controller then sets the pod's context up itself (POST /context: the files, the limits
and the egress grant, which never pass through the resource), and every operation goes
straight to that pod over HTTP with the token.  What the controller knows of contexts
is an informer's cache (controller.kubernetes.informer), so any replica serves any
context and a restarted one serves them at once.  The session rules are kept where the
state is: one operation at a time by the runner (a second one is its 409), use by the
runner's idle clock, which the operator reads to expire idle contexts and records.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
from runner.context import LIST_ANSWER_BYTES
from runner.contract import (
    MAX_PATH_CHARS,
    SERVING_REFUSALS,
    CallOutcome,
    ContextFailed,
    EgressGrant,
    EventSink,
    FileRefused,
    InputFile,
    Job,
)
from runner.wire import Failure, WireError, decode_call, encode_job

from controller.contexts.models import ContextInfo
from controller.contexts.placement import ContextCall, ContextSpec, ContextTerms, LiveContext
from controller.contexts.sessions import CONTEXT, busy, context_kind, failed
from controller.errors import NotFound, SandboxUnavailable
from controller.execution.limits import sandbox_limits
from controller.keys import Caller
from controller.kubernetes.api import KubeApi, KubeNotFound, KubernetesError, load_client
from controller.kubernetes.backend import egress_grant, pod_spec, proxy_address, sandbox_errors
from controller.kubernetes.context_manifests import (
    ContextPodTemplate,
    code_context,
    template_patch,
)
from controller.kubernetes.informer import SessionResources
from controller.kubernetes.resources import (
    CODE_CONTEXTS,
    CodeContextResource,
    reported_count,
    reported_idle_s,
)
from controller.kubernetes.session_pods import EXPIRED, FAILED, READY
from controller.kubernetes.streamed import EventRelay, read_streamed
from controller.metrics import Metrics
from controller.replies import IDENTITY, ReplyTooLarge, ReplyUndecodable, read_capped
from controller.settings import Settings

log = logging.getLogger(__name__)

SETUP_TIMEOUT_S = 30.0
"""The context's setup: its files written into the warm sandbox."""
OPERATION_TIMEOUT_S = 30.0
"""A file operation, a restart, a status."""
CALL_MARGIN_S = 20.0
"""Past a call's timeout and grace: the interpreter's replacement, the answer."""
START_MARGIN_S = 30.0
"""Past the pod's start-up: the operator's claim and status write."""
SMALL_REPLY_BYTES = 64 * 1024
LIST_REPLY_BYTES = LIST_ANSWER_BYTES + 1024 * 1024
"""A listing as the runner sends it: its keeper's answer (bounded), and the JSON around
each entry."""
RULE = re.compile(r"[a-z_]{1,40}")
JSON_TEXT = re.compile(rb'"(?:[^"\\]|\\.)*"')


def context_info(context: CodeContextResource, live: dict[str, Any] | None = None) -> ContextInfo:
    """The public record of a Ready CodeContext: what its resource says, and what its
    runner said just now (``live``: its /status, when asked)."""
    status = context.status
    calls, restarts, busy_now = status.calls, status.restarts, False
    last_used = context.last_used_at
    if live is not None:
        live_calls, live_restarts = (
            reported_count(live.get("calls")),
            reported_count(live.get("restarts")),
        )
        calls = calls if live_calls is None else live_calls
        restarts = restarts if live_restarts is None else live_restarts
        busy_now = live.get("busy") is True
        idle = reported_idle_s(live)
        if idle is not None and idle < 1e9:  # beyond, no date
            last_used = max(last_used, datetime.now(UTC) - timedelta(seconds=idle))
    end = context.created + timedelta(seconds=context.max_lifetime_s)
    allowed = (context.network or {}).get("allowedDomains")
    return ContextInfo(
        contextId=context.name,
        labels=dict(context.labels),
        allowedDomains=[str(d) for d in allowed] if isinstance(allowed, list) else [],
        createdAt=context.created,
        lastUsedAt=last_used,
        expiresAt=end
        if busy_now
        else min(end, last_used + timedelta(seconds=context.idle_timeout_s)),
        idleTimeoutS=context.idle_timeout_s,
        maxLifetimeS=context.max_lifetime_s,
        calls=calls,
        restarts=restarts,
        busy=busy_now,
    )


class RemoteContext:
    """A context's runner pod, for one operation: its answers as a LiveContext's."""

    def __init__(self, http: httpx.AsyncClient, endpoint: str, token: str, context_id: str) -> None:
        self._http, self._endpoint, self._context_id = http, endpoint, context_id
        self._headers = {**IDENTITY, "Authorization": f"Bearer {token}"}

    async def request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        timeout_s: float = OPERATION_TIMEOUT_S,
        max_bytes: int = SMALL_REPLY_BYTES,
        file: bool = False,
        streamed: EventRelay | None = None,
    ) -> bytes:
        """The body of a 200; the runner's refusals as the contract's exceptions.

        A pod the code may have taken over answers this: only an operation on a file
        (``file``) can be refused as FileRefused, which its route answers 404 or 422;
        any other refusal, and any answer too large, is the platform's (503).  A call
        (``streamed``: its events' relay) is answered with its events, passed on as they
        come, and then its outcome's line, which is what this returns.
        """
        status = 0
        try:
            async with (
                asyncio.timeout(timeout_s),
                self._http.stream(
                    method,
                    self._endpoint + path,
                    content=content,
                    headers=self._headers,
                    timeout=httpx.Timeout(timeout_s, connect=5.0),
                ) as response,
            ):
                status = response.status_code
                if status == 200 and streamed is not None:
                    body = await read_streamed(response, streamed)
                else:
                    # A refusal is a short message, whatever the answer it stands for is.
                    body = await read_capped(
                        response, max_bytes if status == 200 else SMALL_REPLY_BYTES
                    )
        except ReplyTooLarge:
            if file and status == 200:
                raise FileRefused("max_bytes", f"larger than {max_bytes} bytes") from None
            raise SandboxUnavailable("the context's runner sent an answer too large") from None
        except ReplyUndecodable as exc:
            raise SandboxUnavailable(f"the context's runner sent {exc}") from None
        except TimeoutError:
            raise SandboxUnavailable(
                f"the context's runner did not answer within {timeout_s:.0f}s"
            ) from None
        except httpx.TransportError as exc:
            raise RunnerUnreachable(
                f"the context's runner pod did not answer ({type(exc).__name__})"
            ) from exc
        if status == 200:
            return body
        code, message = _refusal(body)
        if status == 409 and code == "busy":
            raise busy(self._context_id)
        if status == 503:
            raise ContextFailed(message)
        is_rule = code is not None and code not in SERVING_REFUSALS and RULE.fullmatch(code)
        if file and status in (404, 422) and is_rule:
            assert code is not None
            raise FileRefused(code, message)
        raise SandboxUnavailable(f"the context's runner answered {status}: {message}")

    async def setup(self, job: Job) -> None:
        """Set the claimed pod up for the context; FileRefused for its files' rules."""
        await self.request(
            "POST", "/context", content=encode_job(job), timeout_s=SETUP_TIMEOUT_S, file=True
        )

    async def run(self, call: ContextCall, events: EventSink | None = None) -> CallOutcome:
        limits = call.limits
        body = {
            "executionId": call.call_id,
            "code": call.code,
            "stdin": call.stdin,
            "timeoutMs": limits.timeout_ms,
            "graceMs": call.grace_ms,
            "figures": list(call.figures),
        }
        job = Job(call.call_id, call.code, call.stdin, limits=limits)
        raw = await self.request(
            "POST",
            "/run",
            content=json.dumps(body).encode(),
            timeout_s=(limits.timeout_ms + call.grace_ms) / 1000 + CALL_MARGIN_S,
            streamed=EventRelay(job, events),
        )
        try:
            answer = decode_call(raw, job)
        except WireError as exc:
            raise SandboxUnavailable(f"the context's runner answered nonsense: {exc}") from None
        if isinstance(answer, Failure):
            if answer.code == "context_failed":
                raise ContextFailed(answer.message)
            raise SandboxUnavailable(f"the context's runner failed: {answer.message}")
        return answer

    async def interrupt(self, call_id: str) -> None:
        """That call, interrupted if it runs now (its answer comes on its own exchange)."""
        body = json.dumps({"executionId": call_id}).encode()
        with contextlib.suppress(ContextFailed, SandboxUnavailable, RunnerUnreachable):
            await self.request("POST", "/interrupt", content=body, timeout_s=3.0)

    async def restart(self) -> None:
        await self.request("POST", "/restart")

    async def list_files(self, max_entries: int) -> tuple[list[tuple[str, int]], bool]:
        raw = await self.request("GET", f"/files?max={max_entries}", max_bytes=LIST_REPLY_BYTES)
        return listing(raw, max_entries)

    async def read_file(self, path: str, max_bytes: int) -> bytes:
        return await self.request("GET", "/files/" + quote(path), max_bytes=max_bytes, file=True)

    async def write_file(self, path: str, data: bytes) -> None:
        await self.request("PUT", "/files/" + quote(path), content=data, file=True)

    async def delete(self, path: str) -> None:
        await self.request("DELETE", "/files/" + quote(path), file=True)

    async def status(self) -> dict[str, Any] | None:
        """The runner's /status, or None when it does not give one."""
        try:
            reply = json.loads(await self.request("GET", "/status", timeout_s=3.0))
        except (ContextFailed, SandboxUnavailable, ValueError, RecursionError):
            return None
        return reply if isinstance(reply, dict) else None


def listing(raw: bytes, max_entries: int) -> tuple[list[tuple[str, int]], bool]:
    """A runner's file listing, read strictly and within its bounds: at most
    ``max_entries`` entries, each a path and a size."""
    # Its structure, its texts aside: one list, and an object per entry at most.  A
    # reply of empty objects or lists would cost the controller far more memory than its
    # bytes, so it is refused before it is parsed.
    structure = JSON_TEXT.sub(b'""', raw)
    if structure.count(b"[") > 1 or structure.count(b"{") > max_entries + 1:
        raise SandboxUnavailable("the context's runner listed more files than asked")

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not a number")

    try:
        listed = json.loads(raw, parse_constant=refuse)
        files = []
        for entry in listed["files"]:
            path, size = entry["path"], entry["size"]
            if not isinstance(path, str) or not 0 < len(path) <= MAX_PATH_CHARS:
                raise ValueError("a path is a text of 1 to MAX_PATH_CHARS characters")
            if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size < 2**63:
                raise ValueError("a size is a count of bytes")
            files.append((path, size))
        complete = listed["complete"] is True
    except (ValueError, TypeError, KeyError, RecursionError) as exc:
        raise SandboxUnavailable(f"the context's runner listed nonsense: {exc}") from None
    return files[:max_entries], complete and len(files) <= max_entries


class RunnerUnreachable(SandboxUnavailable):
    """The context's pod did not answer at all: gone, or not yet known to be."""


def _refusal(body: bytes) -> tuple[str | None, str]:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None, body[:200].decode(errors="replace")
    if not isinstance(document, dict):
        return None, str(document)[:200]
    code = document.get("error")
    message = str(document.get("message") or document.get("detail") or "")[:500]
    return (code if isinstance(code, str) else None), message


class KubernetesContexts:
    """Contexts as CodeContext resources in KUBERNETES_NAMESPACE, with the runner pods."""

    name = "kubernetes"

    def __init__(
        self, settings: Settings, api: KubeApi | None = None, metrics: Metrics | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self._api = api
        self._resources: SessionResources[CodeContextResource] | None = None
        # No pool to wait for (each context's calls are one at a time, and its runner
        # closes each connection): a call never queues behind another context's.
        self._http = httpx.AsyncClient(
            trust_env=False,
            timeout=httpx.Timeout(30.0, connect=5.0),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
        )
        self._kind = context_kind(settings)
        self._egress_address = ""

    @property
    def resources(self) -> SessionResources[CodeContextResource]:
        if self._resources is None:
            if self._api is None:
                self._api = KubeApi(load_client(), self.settings.kubernetes_namespace)
            self._resources = SessionResources(self._api, CODE_CONTEXTS, CodeContextResource.parse)
        return self._resources

    async def start(self) -> None:
        settings = self.settings
        await self.resources.start()
        template = ContextPodTemplate(
            pod_spec(settings), settings.warm_sandbox_max_age_s, settings.context_max_lifetime_s
        )
        try:
            await self.resources.api.patch_config_map(
                settings.context_pool_owner, template_patch(template)
            )
        except KubernetesError as exc:  # the operator keeps the last one published
            log.error("cannot publish the context pods' template: %s", exc)
        if settings.network_ceiling.allows_anything:
            try:
                self._egress_address = await proxy_address(settings.egress_proxy)
            except (OSError, ValueError) as exc:
                log.error("no egress proxy for code contexts: %s", exc)

    async def stop(self) -> None:
        """Contexts stay: they are the cluster's, served again by the next replica."""
        if self._resources is not None:
            self._resources.stop()
        await self._http.aclose()

    # --- the contexts ----------------------------------------------------------------

    async def open(self, spec: ContextSpec, terms: ContextTerms, caller: Caller) -> ContextInfo:
        resources = self.resources
        grant = self._grant(spec, terms)
        name = spec.context_id
        with resources.creating(name, caller, self._kind), sandbox_errors():
            manifest = code_context(
                name,
                terms.idle_timeout_s,
                terms.max_lifetime_s,
                dict(terms.labels),
                ContextTerms.allowed_domains(spec.network) if spec.network else None,
                caller.name,
            )
            await resources.api.create_custom(CODE_CONTEXTS, manifest)
            try:
                context = await resources.until_settled(
                    name, self.settings.runner_pod_start_timeout_s + START_MARGIN_S, self._late
                )
                if context.phase != READY:
                    raise SandboxUnavailable(
                        f"code context {name} could not start: {context.status.reason}"
                    )
                remote = await self._remote(context)
                await remote.setup(self._setup_job(spec, grant))
            except BaseException:
                # Refused, timed out, or the caller went away: nobody will use it.
                await asyncio.shield(resources.delete_quietly(name))
                raise
        return context_info(context)

    def _late(self, context: CodeContextResource | None) -> Exception:
        reason = context.status.reason if context is not None else None
        timeout_s = self.settings.runner_pod_start_timeout_s + START_MARGIN_S
        return SandboxUnavailable(
            f"the code context was not ready within {timeout_s:.0f}s "
            "(setting RUNNER_POD_START_TIMEOUT_S)"
            + (f": {reason}" if reason else "; is the operator running?")
        )

    def _grant(self, spec: ContextSpec, terms: ContextTerms) -> EgressGrant | None:
        """The context's egress grant, for its whole life (and the start before it)."""
        if spec.network is None:
            return None
        if not self._egress_address:
            raise SandboxUnavailable("no egress proxy is reachable for the context's network")
        settings = self.settings
        deadline = (
            time.time()
            + settings.runner_pod_start_timeout_s
            + START_MARGIN_S
            + terms.max_lifetime_s
        )
        return egress_grant(settings, self._egress_address, spec.context_id, spec.network, deadline)

    def _setup_job(self, spec: ContextSpec, grant: EgressGrant | None) -> Job:
        return Job(
            execution_id=spec.context_id,
            code="",
            files=tuple(InputFile(path, data) for path, data in spec.files),
            sandbox=sandbox_limits(self.settings),
            limits=spec.limits,
            egress=grant,
        )

    async def _remote(self, context: CodeContextResource) -> RemoteContext:
        try:
            token = await self.resources.token(context)
        except KubeNotFound:
            raise failed(context.name, "its runner pod's token Secret is gone") from None
        endpoint = context.status.endpoint or ""
        return RemoteContext(self._http, endpoint, token, context.name)

    async def _resource(self, context_id: str, caller: Caller) -> CodeContextResource:
        """The caller's context's resource, in whatever phase; NotFound if there is none."""
        if not CONTEXT.is_id(context_id):  # no name the API server would even accept
            raise CONTEXT.not_found(context_id)
        with sandbox_errors():
            context = await self.resources.read(context_id)
        if context is None or context.owner != caller.name:
            raise CONTEXT.not_found(context_id)  # another caller's: as if it did not exist
        return context

    async def _usable(self, context_id: str, caller: Caller) -> CodeContextResource:
        context = await self._resource(context_id, caller)
        reason = context.status.reason
        if context.phase == FAILED:
            raise failed(context_id, reason or "its runner pod failed")
        if context.phase == EXPIRED:
            raise NotFound(f"code context {context_id!r} expired: {reason}")
        if context.phase != READY:
            raise NotFound(f"code context {context_id!r} is still starting")
        return context

    def list(self, caller: Caller | None = None) -> list[ContextInfo]:
        infos = [
            context_info(context)
            for context in self.resources.cache.values()
            if context.phase == READY
            and not context.deleting
            and (caller is None or context.owner == caller.name)
        ]
        return sorted(infos, key=lambda info: info.createdAt)

    async def info(self, context_id: str, caller: Caller) -> ContextInfo:
        context = await self._usable(context_id, caller)
        with sandbox_errors():
            remote = await self._remote(context)
        return context_info(context, await remote.status())

    async def close(self, context_id: str, caller: Caller) -> None:
        with sandbox_errors():
            await self._resource(context_id, caller)  # the caller's, or 404
            if not await self.resources.api.delete_custom(CODE_CONTEXTS, context_id):
                raise CONTEXT.not_found(context_id)
        self.resources.forget(context_id)
        self.metrics.contexts_closed.labels("deleted").inc()
        log.info("code context %s closed (deleted)", context_id)

    @contextlib.asynccontextmanager
    async def operating(self, context_id: str, caller: Caller) -> AsyncIterator[LiveContext]:
        context = await self._usable(context_id, caller)
        with sandbox_errors():
            remote = await self._remote(context)
        try:
            yield remote
        except ContextFailed as exc:
            # The runner says its sandbox failed: it exits, and the operator marks the
            # context Failed (its reason, once written, is what later callers read).
            raise failed(context_id, str(exc)) from None
        except RunnerUnreachable:
            # Gone (the operator may know why already), or a moment's trouble: only
            # the resource can tell, and the caller may retry the second.
            with contextlib.suppress(SandboxUnavailable, NotFound):
                now = await self._resource(context_id, caller)
                if now.phase in (FAILED, EXPIRED):
                    raise failed(context_id, now.status.reason or "its runner pod ended") from None
            raise
