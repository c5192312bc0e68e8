"""The client's errors: a failure of the platform or of the request, never of the code.

SandboxClientError            anything this client raises
+-- TransportError            the service could not be reached or did not answer in time
+-- ApiError                  the service answered an error (status, code, message, details)
    +-- AuthenticationError   401: a missing or wrong token (SANDBOX_TOKEN)
    +-- InvalidRequest        422 (and 413): ``details`` names each field and rule
    +-- NotFound              404: no such session or tab
    +-- Overloaded            429, still after the retries: too many runs or sessions
    +-- ServiceUnavailable    503, still after the retries: the sandbox cannot run, or
                              the service is stopping
"""

from __future__ import annotations

from typing import Any


class SandboxClientError(Exception):
    """Base of every error of this client."""


class TransportError(SandboxClientError):
    """The service could not be reached, or did not answer within the request timeout."""


class ApiError(SandboxClientError):
    """An error the service answered, as it said it."""

    def __init__(
        self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []


class AuthenticationError(ApiError):
    pass


class InvalidRequest(ApiError):
    pass


class NotFound(ApiError):
    pass


class Overloaded(ApiError):
    pass


class ServiceUnavailable(ApiError):
    pass


BY_STATUS: dict[int, type[ApiError]] = {
    401: AuthenticationError,
    404: NotFound,
    413: InvalidRequest,
    422: InvalidRequest,
    429: Overloaded,
    503: ServiceUnavailable,
}


def api_error(status: int, body: Any, fallback: str) -> ApiError:
    """The error for an answer of ``status``; ``body`` is its JSON if it had any."""
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        details = body.get("details")
        return BY_STATUS.get(status, ApiError)(
            status,
            body["error"],
            str(body.get("message", "")),
            details if isinstance(details, list) else None,
        )
    return BY_STATUS.get(status, ApiError)(status, "http_error", fallback)
