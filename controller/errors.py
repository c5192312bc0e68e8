"""The product's error tree; every error maps to one HTTP status and one JSON shape.

    ControllerError              500  a failure of the platform, never of the user's code
    +-- InvalidRequest           422  a request field breaks a rule (names field and rule)
    +-- RequestTooLarge          413  the body exceeds MAX_REQUEST_BYTES
    +-- Unauthorized             401  missing or wrong bearer token
    +-- Forbidden                403  a caller's key may not do this (the operator's own)
    +-- NotFound                 404  no such resource
    +-- Busy                     409  the resource is serving another call (a code context)
    +-- Gone                     410  the resource existed and failed (a session whose pod died)
    +-- Overloaded               429  admission queue full (with Retry-After)
    +-- SandboxUnavailable       503  the sandbox cannot run here; the message says why
    +-- ShuttingDown             503  the service is stopping (SIGTERM; with Retry-After)
    +-- BrowserUnavailable       503  no browser agent could be started; the message says why
    +-- ServiceUnavailable       503  another part of the service cannot work; says which
    +-- RequestTimeout           408  the request's body did not arrive in time
    +-- BadGateway               502  a browser agent failed or could not be reached
    |   +-- MalformedReply       502  ... or answered what the protocol does not allow
    +-- GatewayTimeout           504  a browser agent did not answer in time
    +-- AgentRefused          4xx/5xx an agent's own error (e.g. 409 element_timeout), passed on

The user's code failing (non-zero exit, timeout, a denied operation) is not an error:
it is a normal result with exit code, flags and violations.
"""

from __future__ import annotations

from typing import Any


class ControllerError(Exception):
    """Base of every error the service reports on purpose."""

    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message}


class InvalidRequest(ControllerError):
    status_code = 422
    code = "invalid_request"

    def __init__(self, field: str, rule: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.details = [{"field": field, "rule": rule, "message": message}]

    def body(self) -> dict[str, Any]:
        return {**super().body(), "details": self.details}


class RequestTooLarge(ControllerError):
    status_code = 413
    code = "request_too_large"

    def __init__(self, limit: int) -> None:
        # The rest of the body is not read: the connection cannot carry another request.
        super().__init__(
            f"request body exceeds {limit} bytes (setting MAX_REQUEST_BYTES)",
            headers={"Connection": "close"},
        )
        self.details = [{"field": "body", "rule": "max_bytes", "message": f"at most {limit} bytes"}]

    def body(self) -> dict[str, Any]:
        return {**super().body(), "details": self.details}


class Unauthorized(ControllerError):
    status_code = 401
    code = "unauthorized"


class Forbidden(ControllerError):
    status_code = 403
    code = "forbidden"


class NotFound(ControllerError):
    status_code = 404
    code = "not_found"


class Busy(ControllerError):
    status_code = 409
    code = "busy"


class Gone(ControllerError):
    status_code = 410
    code = "gone"


class Overloaded(ControllerError):
    status_code = 429
    code = "overloaded"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class SandboxUnavailable(ControllerError):
    status_code = 503
    code = "sandbox_unavailable"


class ShuttingDown(ControllerError):
    status_code = 503
    code = "shutting_down"

    def __init__(self) -> None:
        super().__init__(
            "the service is stopping and admits nothing new; retry (another replica, or "
            "this one once restarted)",
            headers={"Retry-After": "1"},
        )


class BrowserUnavailable(ControllerError):
    status_code = 503
    code = "browser_unavailable"


class ServiceUnavailable(ControllerError):
    status_code = 503
    code = "service_unavailable"


class RequestTimeout(ControllerError):
    status_code = 408
    code = "request_timeout"

    def __init__(self, timeout_s: float) -> None:
        super().__init__(
            f"the request's body did not arrive within {timeout_s:g} s "
            "(setting REQUEST_BODY_TIMEOUT_S)",
            headers={"Connection": "close"},
        )


class BadGateway(ControllerError):
    status_code = 502
    code = "bad_gateway"


class MalformedReply(BadGateway):
    """A browser agent answered, but not what the protocol says (it is untrusted)."""


class GatewayTimeout(ControllerError):
    status_code = 504
    code = "gateway_timeout"


class AgentRefused(ControllerError):
    """An error a browser agent reported in the product's JSON shape, passed on as it came."""

    def __init__(
        self, status: int, code: str, message: str, details: list[dict[str, str]] | None
    ) -> None:
        super().__init__(message)
        self.status_code = status
        self.code = code
        self.details = details

    def body(self) -> dict[str, Any]:
        body = super().body()
        if self.details is not None:
            body["details"] = self.details
        return body
