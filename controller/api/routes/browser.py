"""The /browser API: sessions, navigation, content, tabs, actions and screenshots.

Bodies are validated here with the agent's own models (so a bad request never reaches
a browser) and forwarded; what the agent answers is passed on.
"""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from browser_agent.protocol import (
    ACTION_ADAPTER,
    Action,
    NavigateRequest,
    NavigateResponse,
    TabList,
    action_rule_violation,
)
from browser_agent.urlpolicy import UrlRefused, check_navigation_url
from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import HTMLResponse

from controller.api.body import parse_body
from controller.api.deps import BrowserServiceDep, CallerDep
from controller.api.openapi import AUTHENTICATED, SESSION_CALL, WITH_BODY, body_schema, errors
from controller.bodies.specs import ACTION, CREATE_SESSION, NAVIGATE
from controller.browser.client import reply_model, reply_object
from controller.browser.models import CreatedSession, CreateSessionRequest, SessionInfo, SessionList
from controller.browser.service import BrowserSessions
from controller.errors import InvalidRequest
from controller.keys import Caller

router = APIRouter(prefix="/browser/sessions", tags=["browser"])

TAB_ID = r"^t[0-9]{1,30}$"
REQUEST_MARGIN_S = 5.0


TabIdQuery = Annotated[
    str | None,
    Query(pattern=TAB_ID, description="A tab id such as `t1`; default: the current tab."),
]
TabIdPath = Annotated[str, Path(pattern=TAB_ID)]


def tab_param(value: str | None) -> dict[str, str]:
    return {} if value is None else {"tabId": value}


async def forward(
    service: BrowserSessions,
    session_id: str,
    caller: Caller,
    path: str,
    body: Any,
    default_ms: int,
) -> httpx.Response:
    """POST a validated body to the agent, with the settings' timeout if it gives none.

    The controller waits a little longer than the agent, so that the agent's own, more
    precise timeout error (e.g. 504 navigation_timeout) is the one the caller sees.
    """
    timeout_ms = body.timeoutMs or default_ms
    payload = body.model_copy(update={"timeoutMs": timeout_ms}).model_dump(exclude_none=True)
    return await service.call(
        session_id,
        caller,
        "POST",
        path,
        json=payload,
        timeout_s=timeout_ms / 1000 + REQUEST_MARGIN_S,
    )


@router.post(
    "",
    status_code=201,
    summary="Open a browser session",
    openapi_extra=body_schema(
        "CreateSessionRequest",
        CreateSessionRequest,
        required=False,
        examples={
            "A phone": {"device": "iPhone 13", "labels": {"caller": "agent-7"}},
            "Held to two names": {
                "network": {"allowedDomains": ["docs.example.com", "*.cdn.example.com"]}
            },
        },
    ),
    responses=errors(*AUTHENTICATED, *WITH_BODY, 429, 502, 503, 504),
)
async def create_session(
    request: Request, service: BrowserServiceDep, caller: CallerDep
) -> CreatedSession:
    if not (await request.body()).strip():
        return await service.create(CreateSessionRequest.model_validate({}), caller)
    return await service.create(await parse_body(request, CREATE_SESSION), caller)


@router.get("", summary="List the open browser sessions", responses=errors(*AUTHENTICATED))
async def list_sessions(service: BrowserServiceDep, caller: CallerDep) -> SessionList:
    return SessionList(
        sessions=service.list(caller),
        maxSessions=min(service.settings.max_browser_sessions, caller.max_browser_sessions),
        warmAgents=service.warm_agents,
    )


@router.get("/{session_id}", summary="One browser session", responses=errors(*SESSION_CALL))
async def get_session(
    session_id: str, service: BrowserServiceDep, caller: CallerDep
) -> SessionInfo:
    return (await service.find(session_id, caller)).info()


@router.delete(
    "/{session_id}",
    status_code=204,
    summary="Close a session and kill its browser",
    responses=errors(*SESSION_CALL),
)
async def delete_session(
    session_id: str, service: BrowserServiceDep, caller: CallerDep
) -> Response:
    await service.delete(session_id, caller)
    return Response(status_code=204)


@router.post(
    "/{session_id}/navigate",
    summary="Load a URL in a tab",
    openapi_extra=body_schema(
        "NavigateRequest",
        NavigateRequest,
        examples={"Load a page": {"url": "https://example.com", "waitUntil": "domcontentloaded"}},
    ),
    responses=errors(*SESSION_CALL, *WITH_BODY, 403),
)
async def navigate(
    session_id: str, request: Request, service: BrowserServiceDep, caller: CallerDep
) -> NavigateResponse:
    body = await parse_body(request, NAVIGATE)
    try:
        check_navigation_url(body.url)
    except UrlRefused as exc:
        raise InvalidRequest("url", exc.rule, exc.message) from None
    default_ms = service.settings.browser_navigation_timeout_ms
    response = await forward(service, session_id, caller, "/navigate", body, default_ms)
    return reply_model(response, NavigateResponse)


@router.get(
    "/{session_id}/content",
    summary="The page's HTML",
    response_class=HTMLResponse,
    responses={200: {"description": "The tab's current HTML."}, **errors(*SESSION_CALL)},
)
async def content(
    session_id: str, service: BrowserServiceDep, caller: CallerDep, tabId: TabIdQuery = None
) -> Response:
    response = await service.call(session_id, caller, "GET", "/content", params=tab_param(tabId))
    return Response(response.content, media_type="text/html; charset=utf-8")


@router.get(
    "/{session_id}/tabs", summary="The session's open tabs", responses=errors(*SESSION_CALL)
)
async def list_tabs(session_id: str, service: BrowserServiceDep, caller: CallerDep) -> TabList:
    response = await service.call(session_id, caller, "GET", "/tabs")
    return reply_model(response, TabList)


@router.post(
    "/{session_id}/tabs",
    status_code=201,
    summary="Open a new tab",
    responses=errors(*SESSION_CALL, 409),
)
async def open_tab(
    session_id: str, service: BrowserServiceDep, caller: CallerDep
) -> dict[str, Any]:
    response = await service.call(session_id, caller, "POST", "/tabs")
    return reply_object(response)


@router.delete(
    "/{session_id}/tabs/{tab_id}",
    status_code=204,
    summary="Close a tab",
    responses=errors(*SESSION_CALL),
)
async def close_tab(
    session_id: str, tab_id: TabIdPath, service: BrowserServiceDep, caller: CallerDep
) -> Response:
    await service.call(session_id, caller, "DELETE", f"/tabs/{tab_id}")
    return Response(status_code=204)


async def parse_action(request: Request) -> Action:
    action: Action = await parse_body(request, ACTION)
    violation = action_rule_violation(action)
    if violation is not None:
        raise InvalidRequest(*violation)
    return action


@router.post(
    "/{session_id}/action",
    summary="Click, fill, type, press, ... in a tab",
    openapi_extra=body_schema(
        "Action",
        ACTION_ADAPTER,
        examples={
            "Fill a field": {"action": "fill", "selector": "#q", "value": "sandbox"},
            "Click": {"action": "click", "selector": "button[type=submit]"},
            "Wait for an element": {
                "action": "wait_for",
                "selector": "#results",
                "state": "visible",
            },
        },
    ),
    responses=errors(*SESSION_CALL, *WITH_BODY, 403, 409),
)
async def action(
    session_id: str, request: Request, service: BrowserServiceDep, caller: CallerDep
) -> dict[str, Any]:
    parsed = await parse_action(request)
    default_ms = service.settings.browser_action_timeout_ms
    response = await forward(service, session_id, caller, "/action", parsed, default_ms)
    return reply_object(response)


@router.get(
    "/{session_id}/screenshot",
    summary="A PNG of the tab",
    response_class=Response,
    responses={
        200: {
            "description": "The tab as a PNG image.",
            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
        },
        **errors(*SESSION_CALL),
    },
)
async def screenshot(
    session_id: str,
    service: BrowserServiceDep,
    caller: CallerDep,
    tabId: TabIdQuery = None,
    fullPage: Annotated[bool, Query(description="The whole page, not the viewport.")] = False,
) -> Response:
    params = tab_param(tabId)
    params["fullPage"] = "true" if fullPage else "false"
    response = await service.call(
        session_id, caller, "GET", "/screenshot", params=params, timeout_s=30 + REQUEST_MARGIN_S
    )
    return Response(response.content, media_type="image/png")
