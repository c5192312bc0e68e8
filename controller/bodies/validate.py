"""One body's validation, the same wherever it runs: sizes first, then the model.

The JSON is parsed first (jiter: nesting deeper than its recursion limit is a syntax
error, never a RecursionError) and its sizes checked against the schema
(controller.bodies.shape): ``refusal`` does that, in the service for a small body and in
a parser process for a large one (controller.bodies.pool), where a pathological body
costs its second of CPU without holding up the event loop.  Only a body whose sizes
pass is validated by pydantic (``model``), in the service: its cost is then in
proportion to the body, and bounded.  Errors come back in pydantic's shape, without the
input they were about, at most MAX_ERRORS of them.
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
    error = {"type": "json_invalid", "loc": (), "msg": f"Invalid JSON: {message}"}
    return Invalid([{**error, "ctx": {"error": message}}])


def refusal(raw: bytes, spec: BodySpec, limits: Limits) -> Invalid | None:
    """Why the body's JSON or its sizes are refused; None when they pass."""
    try:
        value = pydantic_core.from_json(raw)
    except ValueError as exc:
        return json_invalid(str(exc))
    refused = spec.shape.errors(value, limits)
    return Invalid([plain(error) for error in refused]) if refused else None


def model(raw: bytes, spec: BodySpec) -> Any:
    """The body validated by ``spec``'s model, or Invalid (its sizes passed already)."""
    try:
        return spec.adapter.validate_json(raw)
    except ValidationError as exc:
        return Invalid([plain(error) for error in spec.errors_of(exc)[:MAX_ERRORS]])


def validate(raw: bytes, spec: BodySpec, limits: Limits) -> Any:
    """``refusal``, then ``model``: the validated body, or Invalid."""
    return refusal(raw, spec, limits) or model(raw, spec)


def plain(error: dict[str, Any]) -> dict[str, Any]:
    """Only what can be sent between processes and shown: text, and ints in locations."""
    ctx = error.get("ctx")
    found: dict[str, Any] = {
        "type": str(error.get("type", "invalid")),
        "loc": tuple(p if isinstance(p, int) else str(p) for p in error.get("loc", ())),
        "msg": str(error.get("msg", "invalid value")),
    }
    if isinstance(ctx, dict):
        found["ctx"] = {str(k): str(v) for k, v in ctx.items()}
    return found
