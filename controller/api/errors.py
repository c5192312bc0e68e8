"""Exception handlers: the one place where errors become HTTP responses."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from controller.errors import ControllerError

log = logging.getLogger(__name__)


def _field_name(loc: tuple[Any, ...], rule: str) -> str:
    """("body", "files", 0, "path") -> "files[0].path"; a JSON syntax error -> "body"."""
    if rule == "json_invalid":
        return "body"
    name = ""
    for part in loc[1:] if loc[:1] == ("body",) else loc:
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
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            {"error": code, "message": str(exc.detail)},
            status_code=exc.status_code,
            headers=exc.headers,
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
