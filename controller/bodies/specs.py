"""The request bodies the API accepts, by name: what the service and the parser process
both validate with (the name is what crosses between them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from browser_agent.protocol import ACTION_ADAPTER, NavigateRequest, action_error_locs
from pydantic import TypeAdapter, ValidationError

from controller.bodies.shape import Shape
from controller.browser.models import CreateSessionRequest
from controller.contexts.models import ContextExecuteRequest, CreateContextRequest
from controller.execution.models import ExecuteRequest


def plain_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """Pydantic's errors without the input they were about (it may be the whole body)."""
    return [dict(error) for error in exc.errors(include_url=False, include_input=False)]


@dataclass(frozen=True)
class BodySpec:
    name: str
    adapter: TypeAdapter[Any]
    errors_of: Callable[[ValidationError], list[dict[str, Any]]] = field(default=plain_errors)

    @cached_property
    def shape(self) -> Shape:
        return Shape(self.adapter.json_schema())


EXECUTE = BodySpec("execute", TypeAdapter(ExecuteRequest))
CREATE_SESSION = BodySpec("create_session", TypeAdapter(CreateSessionRequest))
NAVIGATE = BodySpec("navigate", TypeAdapter(NavigateRequest))
ACTION = BodySpec("action", ACTION_ADAPTER, action_error_locs)
CREATE_CONTEXT = BodySpec("create_context", TypeAdapter(CreateContextRequest))
CONTEXT_EXECUTE = BodySpec("context_execute", TypeAdapter(ContextExecuteRequest))

SPECS = {
    spec.name: spec
    for spec in (EXECUTE, CREATE_SESSION, NAVIGATE, ACTION, CREATE_CONTEXT, CONTEXT_EXECUTE)
}
