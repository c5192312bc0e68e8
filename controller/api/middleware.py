"""Pure ASGI middleware: the request's id and log line, admission while stopping, bearer
authentication (the body's intake is controller.api.intake).

Plain ASGI (not BaseHTTPMiddleware) keeps them off the hot path's cost, and running them
before routing means an unauthenticated caller learns nothing, not even validation errors.
"""

from __future__ import annotations

import json
import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controller import logs
from controller.draining import ALWAYS_SERVED, Drain
from controller.errors import ControllerError, Overloaded, ShuttingDown, Unauthorized
from controller.keys import Caller, InFlight, KeyRing, RateLimits
from controller.metrics import Metrics
from sandbox_common import bearer

access = logging.getLogger("controller.access")

PUBLIC_PATHS = frozenset({"/health", "/livez"})
"""Always public; the API's description too unless API_DOCS is false (controller.app)."""
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


KEY_SCOPE = "sandbox_controller.caller"


def identify(scope: Scope, caller: Caller) -> None:
    """The request is ``caller``'s (logs carry its key's name, never the key)."""
    scope[KEY_SCOPE] = caller
    context = logs.current.get()
    if context is not None:
        context.key = caller.name


def caller_of(scope: Scope) -> Caller:
    """The authenticated caller (every route but the public ones has one)."""
    caller: Caller = scope[KEY_SCOPE]
    return caller


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\n``), for a log line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


class RequestLog:
    """Gives each request its id (``X-Request-ID`` if the caller sent a safe one), answers
    it back in the same header, and when the answer has been sent counts it (metrics) and
    logs one line: method, path (never the query string), status, milliseconds."""

    def __init__(self, app: ASGIApp, access_log: bool, metrics: Metrics) -> None:
        self.app = app
        self.access_log = access_log
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
        context = logs.RequestContext(logs.request_id(given.decode("latin-1") if given else None))
        token = logs.current.set(context)
        header = (b"x-request-id", context.request_id.encode())
        status = 0
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            # No answer sent: an error escaped to the server, which answers 500.
            status = status or 500
            # The path is the caller's, decoded: a line break in it would forge a line.
            method, path = scope["method"], printable(scope["path"])
            route = getattr(scope.get("route"), "path", None)
            self.metrics.request(route, method, status, seconds)
            if self.access_log:
                ms = round(seconds * 1000, 1)
                fields = {"method": method, "path": path, "status": status, "ms": ms}
                access.info("%s %s %d %.1fms", method, path, status, ms, extra={"fields": fields})
            logs.current.reset(token)


class Admitting:
    """While the service drains (controller.draining) a new request is refused (503 with
    Retry-After); the others are counted in flight, so the drain knows when they are done."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in ALWAYS_SERVED:
            await self.app(scope, receive, send)
            return
        if self.drain.draining:
            await send_error(send, ShuttingDown())
            return
        self.drain.entered()
        try:
            await self.app(scope, receive, send)
        finally:
            self.drain.left()


class BearerAuth:
    """Every path but ``public_paths`` needs a caller's bearer token: AUTH_TOKEN or a key
    of AUTH_KEYS_FILE (controller.keys); then the caller's requestsPerMinute applies, and
    its share of the requests in flight (MAX_REQUESTS_PER_KEY)."""

    def __init__(
        self,
        app: ASGIApp,
        keys: KeyRing,
        rates: RateLimits,
        in_flight: InFlight,
        public_paths: frozenset[str],
    ) -> None:
        self.app = app
        self.keys = keys
        self.rates = rates
        self.in_flight = in_flight
        self._public = public_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self._public:
            await self.app(scope, receive, send)
            return
        token = bearer.credentials(bearer.authorization_values(scope["headers"]))
        caller = self.keys.caller(token) if token is not None else None
        if caller is None:
            verdict = bearer.Verdict.MISSING if token is None else bearer.Verdict.INVALID
            message, challenge = REFUSALS[verdict]
            await send_error(send, Unauthorized(message, headers={"WWW-Authenticate": challenge}))
            return
        identify(scope, caller)
        try:
            self.rates.take(caller)
            self.in_flight.enter(caller)
        except Overloaded as exc:
            # Its body, if any, is not read: the connection cannot carry another request.
            exc.headers["Connection"] = "close"
            await send_error(send, exc)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight.leave(caller)
