"""Dependencies the routes declare: the settings and services that the lifespan owns.

They are ``async def`` although they never wait: FastAPI runs a plain ``def`` dependency
in a worker thread, a thread hop on every request for a dictionary lookup.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from controller.api.middleware import caller_of
from controller.browser.service import BrowserSessions
from controller.contexts.service import ContextService
from controller.execution.service import ExecutionService
from controller.keys import Caller
from controller.settings import Settings


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_execution_service(request: Request) -> ExecutionService:
    service: ExecutionService = request.app.state.execution
    return service


async def get_browser_service(request: Request) -> BrowserSessions:
    service: BrowserSessions = request.app.state.browser
    return service


async def get_context_service(request: Request) -> ContextService:
    service: ContextService = request.app.state.contexts
    return service


async def get_caller(request: Request) -> Caller:
    return caller_of(request.scope)


SettingsDep = Annotated[Settings, Depends(get_settings)]
CallerDep = Annotated[Caller, Depends(get_caller)]
"""The authenticated caller (controller.api.middleware.identify)."""
ExecutionServiceDep = Annotated[ExecutionService, Depends(get_execution_service)]
BrowserServiceDep = Annotated[BrowserSessions, Depends(get_browser_service)]
ContextServiceDep = Annotated[ContextService, Depends(get_context_service)]
