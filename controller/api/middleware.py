"""Pure ASGI middleware: bearer authentication first, then the request-body size cap.

Plain ASGI (not BaseHTTPMiddleware) keeps them off the hot path's cost, and running them
before routing means an unauthenticated caller learns nothing, not even validation errors.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controller.errors import ControllerError, RequestTooLarge, Unauthorized
from sandbox_common import bearer

PUBLIC_PATHS = frozenset({"/health"})
REFUSALS = {
    bearer.Verdict.MISSING: (
        "missing bearer token: send one 'Authorization: Bearer <token>' header",
        "Bearer",
    ),
    bearer.Verdict.INVALID: ("invalid bearer token", 'Bearer error="invalid_token"'),
}


async def send_error(send: Send, error: ControllerError) -> None:
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BearerAuth:
    """Every path but the public ones needs the bearer token (sandbox_common.bearer)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = bearer.digest(token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        verdict = bearer.check(bearer.authorization_values(scope["headers"]), self._expected)
        if verdict is not bearer.Verdict.OK:
            message, challenge = REFUSALS[verdict]
            await send_error(send, Unauthorized(message, headers={"WWW-Authenticate": challenge}))
            return
        await self.app(scope, receive, send)


class BodyLimit:
    """Refuses bodies over ``limit`` bytes: by Content-Length up front, or while streaming."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.limit:
                    await send_error(send, RequestTooLarge(self.limit))
                    return
                break
        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not response_started:
                await send_error(send, RequestTooLarge(self.limit))


class _BodyTooLarge(Exception):
    pass
