"""Exception handlers: the one place where errors become HTTP responses."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from controller.errors import ControllerError

log = logging.getLogger(__name__)


def _field_name(loc: tuple[Any, ...], rule: str) -> str:
    """("body", "files", 0, "path") -> "files[0].path", ("query", "tabId") -> "tabId"; a
    JSON syntax error -> "body"."""
    if rule == "json_invalid":
        return "body"
    name = ""
    for part in loc[1:] if loc[:1] in (("body",), ("query",), ("path",)) else loc:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


def validation_details(errors: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Pydantic's errors reduced to field, rule and a readable message."""
    details = []
    for error in errors:
        loc = tuple(error.get("loc", ()))
        rule = str(error.get("type", "invalid"))
        message = str(error.get("msg", "invalid value"))
        if rule == "json_invalid":
            message = "not valid JSON: " + str(error.get("ctx", {}).get("error", ""))
        elif rule == "extra_forbidden":
            message = "unknown field"
        details.append({"field": _field_name(loc, rule), "rule": rule, "message": message})
    return details


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method the OpenAPI document gives for ``path``."""
    methods: set[str] = set()
    for template, operations in app.openapi()["paths"].items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            methods |= {method.upper() for method in operations}
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ControllerError)
    async def controller_error(_: Request, exc: ControllerError) -> JSONResponse:
        if exc.status_code >= 500:
            log.warning("%s: %s", exc.code, exc.message)
        return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = validation_details(list(exc.errors()))
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
        return JSONResponse(
            {"error": "invalid_request", "message": summary, "details": details}, status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names the methods of the first route of the path only; a path
            # served by two routes (GET and POST /browser/sessions) allows both.
            headers["Allow"] = ", ".join(allowed_methods(app, request.url.path))
        return JSONResponse(
            {"error": code, "message": str(exc.detail)},
            status_code=exc.status_code,
            headers=headers,
        )

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse(
            {
                "error": "internal_error",
                "message": f"internal error ({type(exc).__name__}); see the service log",
            },
            status_code=500,
        )
