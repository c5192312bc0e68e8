"""The OpenAPI document: every status an operation answers, one error schema, bearer auth.

The routes parse their own bodies (controller.api.body), so FastAPI does not see their
request models; ``body_schema`` registers each here and ``openapi`` puts it, and every
model it refers to, under ``components/schemas``, where references resolve.  A client
generated from the document, or a validator such as schemathesis, then knows every
answer it can get: the statuses below are the ones the error tree (controller.errors)
and the middleware produce, each with the shared ``ErrorBody``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from controller.api.streaming import KEEPALIVE_S

REF = "#/components/schemas/{model}"
BEARER = "bearerAuth"


class ErrorDetail(BaseModel):
    field: str = Field(description="The request field, e.g. `files[0].path` or `body`.")
    rule: str = Field(description="The rule it broke, e.g. `max_bytes`, `outside_ceiling`.")
    message: str


class ErrorBody(BaseModel):
    """What every error answers (controller.errors)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": "invalid_request",
                    "message": "timeoutMs: at most 120000",
                    "details": [
                        {
                            "field": "timeoutMs",
                            "rule": "less_than_equal",
                            "message": "at most 120000",
                        }
                    ],
                },
                {
                    "error": "overloaded",
                    "message": "4 executions running and 32 queued; retry later",
                },
            ]
        }
    )

    error: str = Field(description="A stable code: `invalid_request`, `overloaded`, ...")
    message: str = Field(description="What went wrong, naming the setting to change if any.")
    details: list[ErrorDetail] | None = Field(
        None, description="Per field, for `invalid_request` and `request_too_large`."
    )


RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}}
ERRORS: dict[int, tuple[str, dict[str, Any]]] = {
    401: (
        "Missing or invalid bearer token.",
        {"WWW-Authenticate": {"description": "`Bearer`.", "schema": {"type": "string"}}},
    ),
    403: (
        "Refused: the destination, by the network policy (`destination_forbidden`); or "
        "this endpoint, to a key other than AUTH_TOKEN's (`forbidden`).",
        {},
    ),
    404: ("No such session, context, tab or file (`not_found`, `tab_not_found`).", {}),
    409: (
        "The page did not allow it: `element_timeout`, `action_failed`, `tab_limit`; or "
        "the context is running another call (`busy`).",
        {},
    ),
    408: ("The body did not arrive within REQUEST_BODY_TIMEOUT_S (`request_timeout`).", {}),
    410: (
        "The session or context existed and failed (its browser or sandbox died); it is gone.",
        {},
    ),
    413: ("The body exceeds MAX_REQUEST_BYTES (`request_too_large`).", {}),
    422: ("A field breaks a rule; `details` names each field and rule.", {}),
    429: (
        "Too many executions, sessions, request bodies or requests of the key at once, or "
        "past the key's requests a minute (`overloaded`); retry after a while.",
        RETRY_AFTER,
    ),
    502: ("The browser failed or could not be reached, or the page could not load.", {}),
    503: (
        "The sandbox, the browser or another part of the service cannot run here, or the "
        "service is stopping.",
        RETRY_AFTER,
    ),
    504: ("The browser or the page did not answer in time.", {}),
}
AUTHENTICATED = (401, 429)
"""What any call with a token may answer: its key's requestsPerMinute and its share of
the requests in flight (MAX_REQUESTS_PER_KEY) are checked with it."""
WITH_BODY = (408, 413, 422, 429, 503)
"""What any call with a body may answer: its intake (controller.api.intake) and its
validation (a parser process, for a large one)."""
SESSION_CALL = (*AUTHENTICATED, 404, 410, 422, 502, 504)
"""What any call through a session's browser may answer."""
CONTEXT_CALL = (*AUTHENTICATED, 404, 409, 410, 422)
"""What any operation on a code context may answer."""


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """FastAPI ``responses`` for ``statuses``, each with the shared error body.

    The content is spelled out rather than given as a ``model``: FastAPI would file a
    model under the route's own media type, which is HTML or PNG for some.
    """
    content = {"application/json": {"schema": {"$ref": REF.format(model="ErrorBody")}}}
    documented: dict[int | str, dict[str, Any]] = {}
    for status in sorted(set(statuses)):
        description, headers = ERRORS[status]
        documented[status] = {"description": description, "content": content}
        if headers:
            documented[status]["headers"] = headers
    return documented


_REQUEST_BODIES: dict[str, TypeAdapter[Any]] = {"ErrorBody": TypeAdapter(ErrorBody)}
"""The schemas ``openapi`` adds to the components: the request bodies, the errors'."""


def body_schema(
    name: str,
    body: type[BaseModel] | TypeAdapter[Any],
    *,
    required: bool = True,
    examples: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``openapi_extra`` of a route whose body ``controller.api.body`` parses: a
    reference to ``name``, which ``openapi`` defines; ``examples``: summary -> body."""
    adapter = body if isinstance(body, TypeAdapter) else TypeAdapter(body)
    if _REQUEST_BODIES.setdefault(name, adapter) is not adapter:
        raise ValueError(f"two request bodies named {name}")
    media: dict[str, Any] = {"schema": {"$ref": REF.format(model=name)}}
    if examples:
        media["examples"] = {
            f"example{i}": {"summary": summary, "value": value}
            for i, (summary, value) in enumerate(examples.items(), 1)
        }
    return {"requestBody": {"required": required, "content": {"application/json": media}}}


_RESPONSE_EXAMPLES: dict[tuple[str, str, str], Any] = {}


def response_example(path: str, method: str, status: int, example: Any) -> None:
    """An example of an operation's JSON answer.  Set by ``openapi`` after FastAPI has
    built the document: FastAPI drops every null on the way, and an example whose
    required fields are null would no longer match its own schema."""
    _RESPONSE_EXAMPLES[(path, method.lower(), str(status))] = example


def request_bodies() -> dict[str, TypeAdapter[Any]]:
    """The request bodies by name, as the document defines them (and their validators)."""
    return dict(_REQUEST_BODIES)


def openapi(app: FastAPI) -> dict[str, Any]:
    """The document, built once: FastAPI's, with the request bodies and bearer auth."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    document = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
    )
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name, adapter in _REQUEST_BODIES.items():
        schema = adapter.json_schema(ref_template=REF)
        for defined, definition in {**schema.pop("$defs", {}), name: schema}.items():
            if schemas.setdefault(defined, definition) != definition:
                # Two models of one name: a reference would reach the wrong one.
                raise ValueError(f"two schemas named {defined} in the OpenAPI document")
    for (path, method, status), example in _RESPONSE_EXAMPLES.items():
        answer = document["paths"][path][method]["responses"][status]
        answer["content"]["application/json"]["example"] = example
    document["components"]["securitySchemes"] = {BEARER: {"type": "http", "scheme": "bearer"}}
    document["security"] = [{BEARER: []}]
    app.openapi_schema = document
    return document


STREAMED = {
    "text/event-stream": {
        "schema": {
            "type": "string",
            "description": "With `Accept: text/event-stream`: Server-Sent Events as the run "
            "goes. `stdout` and `stderr` ({text, timestamp}), `result` ({type, data, "
            "display}) and `violation` ({kind, target, detail}) as they happen, then "
            "`done` (exactly the JSON answer of a call without streaming) or `error` "
            "({status, error, message}) if the platform failed after the run began. A "
            f"comment line every {KEEPALIVE_S:g} s keeps a quiet stream open; closing it "
            "ends the run.",
        },
        "example": 'event: stdout\ndata: {"text":"4\\n","timestamp":1796689701749.6}\n\n'
        'event: done\ndata: {"executionId":"ex-...","exitCode":0,...}\n\n',
    }
}
"""The streamed form of a run's 200 (controller.api.streaming)."""


def ran(description: str) -> dict[str, Any]:
    """The 200 of an operation that runs code: its JSON answer, or its stream."""
    return {"description": description, "content": STREAMED}


def public(operation: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra`` of an operation that needs no token."""
    return {**operation, "security": []}
