"""The FastAPI application factory; the lifespan owns the services and their backends."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from runner.contract import MIB

from controller import placement
from controller.api.errors import install_error_handlers
from controller.api.intake import BodyBudget, BodyIntake
from controller.api.middleware import PUBLIC_PATHS, Admitting, BearerAuth, RequestLog
from controller.api.openapi import openapi
from controller.api.routes import browser, execute, health
from controller.api.routes import contexts as contexts_route
from controller.api.routes import metrics as metrics_route
from controller.bodies.pool import ParserPool
from controller.browser.backend import SessionBackend
from controller.browser.client import AgentClient
from controller.browser.service import BrowserSessions
from controller.browser.sessions import SessionService
from controller.contexts.placement import ContextPlacement
from controller.contexts.service import ContextService
from controller.draining import Drain
from controller.execution.backend import ExecutionBackend
from controller.execution.service import ExecutionService
from controller.keys import Defaults, InFlight, KeyRing, RateLimits
from controller.metrics import Metrics
from controller.settings import Settings

log = logging.getLogger(__name__)

KEYS_REREAD_S = 2.0
DOCS_PATHS = ("/openapi.json", "/docs", "/redoc")
"""The API's description and two readers of it, public unless API_DOCS is false."""


def create_app(
    settings: Settings,
    *,
    execution: ExecutionBackend | None = None,
    sessions: SessionBackend | None = None,
    contexts: ContextPlacement | None = None,
    agent_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """Build the service for ``settings``.

    The backends default to the ones ``settings.backend`` names; tests inject their own,
    and ``agent_transport`` to answer for the browser agents.  ``contexts``: where code
    contexts run (default: the execution backend's sandboxes, where it has them).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        budget = placement.memory_budget(settings)
        backend = execution or placement.execution_backend(settings)
        app.state.execution = ExecutionService(settings, backend, budget, metrics)
        app.state.contexts = ContextService(
            settings,
            placement.context_sessions(settings, backend, contexts, budget, metrics),
            lambda: app.state.execution.check,
            metrics,
        )
        client = AgentClient(agent_transport)
        app.state.browser = (
            SessionService(settings, sessions, client, budget)
            if sessions is not None
            else placement.browser_sessions(settings, client, budget)
        )
        observe_levels(metrics, app.state.execution, app.state.browser, app.state.contexts)
        app.state.parsers = ParserPool(
            settings.parse_workers, settings.parse_timeout_s, settings.parse_memory_mb
        )
        await app.state.execution.start()
        rereading = asyncio.create_task(reread_keys(keys))
        try:
            await app.state.browser.start()
            await app.state.contexts.start()
            try:
                yield
            finally:
                await app.state.contexts.stop()
                await app.state.browser.stop()
        finally:
            rereading.cancel()
            await app.state.parsers.close()
            await app.state.execution.stop()

    docs = settings.api_docs
    metrics = Metrics()
    drain = Drain(settings.shutdown_grace_s)
    keys = key_ring(settings)
    app = FastAPI(
        title="Sandbox controller",
        summary="Runs untrusted Python in bubblewrap sandboxes and drives headless browsers.",
        version="0.1.0",
        lifespan=lifespan,
        openapi_url=DOCS_PATHS[0] if docs else None,
        docs_url=DOCS_PATHS[1] if docs else None,
        redoc_url=DOCS_PATHS[2] if docs else None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.drain = drain
    app.state.keys = keys
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(execute.router)
    app.include_router(browser.router)
    app.include_router(contexts_route.router)
    app.include_router(metrics_route.router)
    app.openapi = lambda: openapi(app)  # type: ignore[method-assign]
    # Outermost first (added last): the request's id and log line, admission while
    # stopping, authentication, the body cap, then the application.
    app.add_middleware(
        BodyIntake,
        limit=settings.max_request_bytes,
        timeout_s=settings.request_body_timeout_s,
        budget=BodyBudget(settings.request_bodies_mb * MIB),
    )
    app.add_middleware(
        BearerAuth,
        keys=keys,
        rates=RateLimits(),
        in_flight=InFlight(settings.max_requests_per_key),
        public_paths=PUBLIC_PATHS
        | (frozenset(DOCS_PATHS) if docs else frozenset())
        | ({"/metrics"} if settings.metrics_public else frozenset()),
    )
    app.add_middleware(Admitting, drain=drain)
    app.add_middleware(RequestLog, access_log=settings.access_log, metrics=metrics)
    return app


def key_ring(settings: Settings) -> KeyRing:
    """AUTH_TOKEN's caller and AUTH_KEYS_FILE's; a malformed file stops the start here,
    naming the line (controller.__main__ prints it)."""
    defaults = Defaults(
        settings.max_concurrent_executions,
        settings.max_queued_executions,
        settings.max_browser_sessions,
        settings.max_contexts,
    )
    return KeyRing(settings.auth_token.get_secret_value(), defaults, settings.auth_keys_file)


async def reread_keys(keys: KeyRing) -> None:
    """The keys file, read again when it has changed (checked every KEYS_REREAD_S)."""
    while keys.path is not None:
        await asyncio.sleep(KEYS_REREAD_S)
        try:
            keys.reload()
        except Exception:  # never the end of rereading: a revocation must still arrive
            log.exception("AUTH_KEYS_FILE %s could not be read again", keys.path)


def observe_levels(
    metrics: Metrics,
    execution: ExecutionService,
    browser: BrowserSessions,
    contexts: ContextService,
) -> None:
    """The gauges, read from the services when scraped."""
    admission = execution.admission
    metrics.level("sandbox_executions_running", lambda: admission.running)
    metrics.level("sandbox_executions_queued", lambda: admission.admitted - admission.running)
    metrics.level("sandbox_warm_sandboxes", lambda: execution.warm_sandboxes)
    metrics.level("sandbox_browser_sessions_open", lambda: len(browser.list()))
    metrics.level("sandbox_browser_warm_agents", lambda: browser.warm_agents)
    metrics.level("sandbox_contexts_open", lambda: len(contexts.list()))
    budget = admission.budget
    if budget is not None:
        metrics.level("sandbox_memory_budget_mb", lambda: budget.total_mb)
        metrics.level("sandbox_memory_held_mb", lambda: budget.held_mb)
