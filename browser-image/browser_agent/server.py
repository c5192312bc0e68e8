"""The agent's HTTP API (Starlette): the contract the controller speaks in both placements.

    GET  /health                      readiness (and whether a session is bound)
    POST /session      {device, network}  bind the pre-started browser to a session's
                                      device and network policy
    GET  /tabs | POST /tabs | DELETE /tabs/{tabId}
    POST /navigate     NavigateRequest
    GET  /content?tabId=              text/html
    POST /action       Action
    GET  /screenshot?tabId=&fullPage= image/png

Every call needs ``Authorization: Bearer <session token>``, compared in constant time.
``/health`` also says how long the session has been idle (``idleS``: 0 while a call
runs), so whoever enforces the idle timeout (the operator, in Kubernetes mode) reads
activity from the agent instead of being told of every call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from browser_agent import operations
from browser_agent.browser import SessionBrowser
from browser_agent.errors import AgentError, BadInput, Unauthorized
from browser_agent.protocol import (
    ACTION_ADAPTER,
    ConfigureRequest,
    NavigateRequest,
    NetworkRefused,
    TabId,
    action_error_locs,
    action_rule_violation,
)
from browser_agent.proxy import FilteringProxy
from sandbox_common import bearer
from sandbox_common.egress_gate import EgressGate

log = logging.getLogger(__name__)
ModelT = TypeVar("ModelT", bound=BaseModel)
Endpoint = Callable[[Request], Awaitable[Response]]
_TAB_ADAPTER: TypeAdapter[str] = TypeAdapter(TabId)


def error_response(error: AgentError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status)


def invalid(errors: list[dict[str, Any]]) -> BadInput:
    first = errors[0] if errors else {"loc": (), "type": "invalid", "msg": "invalid"}
    field = ".".join(str(p) for p in first["loc"] if not isinstance(p, int)) or "body"
    rule = "unknown_field" if first["type"] == "extra_forbidden" else str(first["type"])
    return BadInput(field, rule, str(first["msg"]))


def parse(raw: bytes, model: type[ModelT]) -> ModelT:
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        raise invalid([dict(e) for e in exc.errors(include_url=False)]) from None


def tab_query(request: Request) -> str | None:
    value = request.query_params.get("tabId")
    if value is None:
        return None
    try:
        return str(_TAB_ADAPTER.validate_python(value))
    except ValidationError:
        raise BadInput("tabId", "pattern", "a tab id such as 't1'") from None


class Activity:
    """When the last call (not a health check) ended, and how many run now."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.last_end = time.monotonic()

    def idle_s(self) -> float:
        return 0.0 if self.in_flight else round(time.monotonic() - self.last_end, 3)


class TokenAuth:
    """Refuses every request without the session's bearer token (sandbox_common.bearer)."""

    def __init__(self, app: ASGIApp, token_digest: bytes, activity: Activity) -> None:
        self.app = app
        self._expected = token_digest
        self._activity = activity

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            values = bearer.authorization_values(scope["headers"])
            if bearer.check(values, self._expected) is not bearer.Verdict.OK:
                await error_response(Unauthorized("missing or wrong session token"))(
                    scope, receive, send
                )
                return
            if scope["path"] != "/health":
                await self._counted(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _counted(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._activity.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self._activity.in_flight -= 1
            self._activity.last_end = time.monotonic()


def guarded(endpoint: Endpoint) -> Endpoint:
    async def wrapper(request: Request) -> Response:
        try:
            return await endpoint(request)
        except AgentError as exc:
            if exc.status >= 500:
                log.warning("%s: %s", exc.code, exc.message)
            return error_response(exc)

    return wrapper


def build_app(browser: SessionBrowser, proxy: FilteringProxy, token_digest: bytes) -> ASGIApp:
    activity = Activity()
    configuring = asyncio.Lock()

    async def health(_: Request) -> Response:
        return JSONResponse(
            {"ok": True, "configured": browser.configured, "idleS": activity.idle_s()}
        )

    async def configure(request: Request) -> Response:
        body = parse(await request.body(), ConfigureRequest)
        try:  # checked before anything changes
            rules = replace(proxy.gate.rules, internal_hosts=body.network.internal_hosts())
            gate = EgressGate(body.network.policy(), rules)
        except NetworkRefused as exc:
            raise BadInput(exc.field, exc.rule, str(exc)) from None
        # One at a time (an operator retries a configure that timed out): the second
        # finds the session bound and is refused, and never sets its own gate.
        async with configuring:
            configured = await browser.configure(body.device)
            # Until now the proxy let nothing out, and no page of the session has loaded
            # (its first tab is blank): each of them meets the session's gate.
            proxy.gate = gate
        return JSONResponse(configured.model_dump())

    async def tabs(request: Request) -> Response:
        if request.method == "POST":
            return JSONResponse((await browser.open_tab()).model_dump(), status_code=201)
        return JSONResponse((await browser.list_tabs()).model_dump())

    async def close_tab(request: Request) -> Response:
        await browser.close_tab(str(request.path_params["tab_id"]))
        return Response(status_code=204)

    async def navigate(request: Request) -> Response:
        body = parse(await request.body(), NavigateRequest)
        return JSONResponse((await operations.navigate(browser, proxy, body)).model_dump())

    async def content(request: Request) -> Response:
        html = await operations.content(browser, tab_query(request))
        return Response(html, media_type="text/html; charset=utf-8")

    async def action(request: Request) -> Response:
        try:
            parsed = ACTION_ADAPTER.validate_json(await request.body() or b"{}")
        except ValidationError as exc:
            raise invalid(action_error_locs(exc)) from None
        violation = action_rule_violation(parsed)
        if violation is not None:
            raise BadInput(*violation)
        return JSONResponse((await operations.act(browser, proxy, parsed)).model_dump())

    async def screenshot(request: Request) -> Response:
        full = request.query_params.get("fullPage", "false").lower()
        if full not in ("true", "false", "1", "0"):
            raise BadInput("fullPage", "bool_parsing", "true or false")
        png = await operations.screenshot(browser, tab_query(request), full in ("true", "1"))
        return Response(png, media_type="image/png")

    routes = [
        Route("/health", guarded(health), methods=["GET"]),
        Route("/session", guarded(configure), methods=["POST"]),
        Route("/tabs", guarded(tabs), methods=["GET", "POST"]),
        Route("/tabs/{tab_id}", guarded(close_tab), methods=["DELETE"]),
        Route("/navigate", guarded(navigate), methods=["POST"]),
        Route("/content", guarded(content), methods=["GET"]),
        Route("/action", guarded(action), methods=["POST"]),
        Route("/screenshot", guarded(screenshot), methods=["GET"]),
    ]
    return TokenAuth(Starlette(routes=routes), token_digest, activity)
