"""JSON request bodies parsed straight into a model, whatever the Content-Type says.

Callers often send JSON without ``Content-Type: application/json`` (curl -d does); the
body is parsed as JSON either way.  Its sizes are checked before any per-item work
(controller.bodies.validate), a large body's in a parser process, never on the event
loop (controller.bodies.pool); then the model validates it.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError

from controller.api.middleware import caller_of
from controller.bodies.pool import INLINE_BYTES, ParserPool
from controller.bodies.shape import Limits
from controller.bodies.specs import BodySpec
from controller.bodies.validate import Invalid, model, validate


async def parse_body(request: Request, spec: BodySpec, limits: Limits | None = None) -> Any:
    """The body validated by ``spec`` within ``limits``; a 422 naming field and rule else."""
    raw = await request.body()
    if len(raw) <= INLINE_BYTES:
        result = validate(raw, spec, limits or {})
    else:
        parsers: ParserPool = request.app.state.parsers
        caller = caller_of(request.scope).name
        result = await parsers.refusal(raw, spec, limits or {}, caller) or model(raw, spec)
    if isinstance(result, Invalid):
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in result.errors]
        )
    return result
