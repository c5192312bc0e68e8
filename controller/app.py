"""The FastAPI application factory; the lifespan owns the backends."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from controller.api.errors import install_error_handlers
from controller.api.middleware import BearerAuth, BodyLimit
from controller.api.routes import browser, execute, health
from controller.browser.local import LocalSessionBackend
from controller.browser.sessions import SessionService
from controller.execution.backend import ExecutionBackend
from controller.execution.local import LocalBackend
from controller.execution.service import ExecutionService
from controller.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings, backend: ExecutionBackend | None = None) -> FastAPI:
    """Build the service for ``settings``; ``backend`` defaults to the one they name."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        chosen = backend or LocalBackend(settings)
        check = await chosen.start()
        if check.ok:
            log.info("sandbox self-test passed: %s", check.detail)
        else:
            # Fail closed: the service answers, /health says why, /execute refuses (503).
            log.error("sandbox self-test FAILED, executions are refused: %s", check.detail)
        app.state.execution = ExecutionService(settings, chosen)
        app.state.browser = SessionService(settings, LocalSessionBackend(settings))
        await app.state.browser.start()
        try:
            yield
        finally:
            await app.state.browser.stop()
            await app.state.execution.close()
            await chosen.stop()

    app = FastAPI(
        title="Sandbox controller",
        summary="Runs untrusted Python in bubblewrap sandboxes.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(execute.router)
    app.include_router(browser.router)
    # Outermost first: authentication, then the body cap, then the application.
    app.add_middleware(BodyLimit, limit=settings.max_request_bytes)
    app.add_middleware(BearerAuth, token=settings.auth_token.get_secret_value())
    return app
