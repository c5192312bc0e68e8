"""One body's validation, the same in the service (small bodies) and in a parser process.

The JSON is parsed first (jiter: nesting deeper than its recursion limit is a syntax
error, never a RecursionError), its counts are checked against the schema
(controller.bodies.shape), and only then does pydantic validate it, so the work done on
a body is bounded by what its counts allow.  Errors come back in pydantic's shape,
without the input they were about, at most MAX_ERRORS of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pydantic_core
from pydantic import ValidationError

from controller.bodies.shape import Limits
from controller.bodies.specs import BodySpec

MAX_ERRORS = 50


@dataclass(frozen=True)
class Invalid:
    """Why a body was refused: errors in pydantic's shape (type, loc, msg, ctx)."""

    errors: list[dict[str, Any]]


def json_invalid(message: str) -> Invalid:
    return Invalid(
        [
            {
                "type": "json_invalid",
                "loc": (),
                "msg": f"Invalid JSON: {message}",
                "ctx": {"error": message},
            }
        ]
    )


def validate(raw: bytes, spec: BodySpec, limits: Limits) -> Any:
    """The validated body, or Invalid."""
    try:
        value = pydantic_core.from_json(raw)
    except ValueError as exc:
        return json_invalid(str(exc))
    refused = spec.shape.errors(value, limits)
    if refused:
        return Invalid(refused)
    del value
    try:
        return spec.adapter.validate_json(raw)
    except ValidationError as exc:
        return Invalid([_plain(error) for error in spec.errors_of(exc)[:MAX_ERRORS]])


def _plain(error: dict[str, Any]) -> dict[str, Any]:
    """Only what can be sent between processes and shown: text, and ints in locations."""
    ctx = error.get("ctx")
    plain: dict[str, Any] = {
        "type": str(error.get("type", "invalid")),
        "loc": tuple(p if isinstance(p, int) else str(p) for p in error.get("loc", ())),
        "msg": str(error.get("msg", "invalid value")),
    }
    if isinstance(ctx, dict):
        plain["ctx"] = {str(k): str(v) for k, v in ctx.items()}
    return plain
