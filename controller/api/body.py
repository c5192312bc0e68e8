"""JSON request bodies parsed straight into a model, whatever the Content-Type says.

Callers often send JSON without ``Content-Type: application/json`` (curl -d does); the
body is parsed as JSON either way, and pydantic-core parses it in one pass.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)


async def parse_body(request: Request, model: type[ModelT]) -> ModelT:
    raw = await request.body()
    try:
        return model.model_validate_json(raw or b"")
    except ValidationError as exc:
        errors: list[dict[str, Any]] = []
        for error in exc.errors(include_url=False):
            errors.append({**error, "loc": ("body", *error["loc"])})
        raise RequestValidationError(errors) from None
