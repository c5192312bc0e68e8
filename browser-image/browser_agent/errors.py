"""The agent's errors: each has an HTTP status and the product's JSON shape.

AgentError               500
+-- BadInput             422  a field breaks a rule (names field and rule)
+-- Unauthorized         401  missing or wrong session token
+-- TabNotFound          404  no open tab with that id
+-- Forbidden            403  the destination is refused by the network policy
+-- ElementTimeout       409  no element matched (or became actionable) in time
+-- ActionFailed         409  the element was found but the action cannot apply
+-- TabLimit             409  the session has as many tabs open as it may
+-- NavigationFailed     502  the page could not be loaded (DNS, refused, reset, ...)
+-- BrowserExited        502  Chromium itself is gone (crashed, killed): the session ends
+-- NavigationTimeout    504  the page did not reach ``waitUntil`` in time
"""

from __future__ import annotations

from typing import Any


class AgentError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, details: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return body


class BadInput(AgentError):
    status = 422
    code = "invalid_request"

    def __init__(self, field: str, rule: str, message: str) -> None:
        super().__init__(
            f"{field}: {message}", [{"field": field, "rule": rule, "message": message}]
        )


class Unauthorized(AgentError):
    status = 401
    code = "unauthorized"


class TabNotFound(AgentError):
    status = 404
    code = "tab_not_found"


class Forbidden(AgentError):
    status = 403
    code = "destination_forbidden"


class ElementTimeout(AgentError):
    status = 409
    code = "element_timeout"


class ActionFailed(AgentError):
    """The element was found but the action could not be done (e.g. fill on a <div>)."""

    status = 409
    code = "action_failed"


class TabLimit(AgentError):
    status = 409
    code = "tab_limit"


class NavigationFailed(AgentError):
    status = 502
    code = "navigation_failed"


class NavigationTimeout(AgentError):
    status = 504
    code = "navigation_timeout"


class BrowserExited(AgentError):
    """Chromium exited under the agent (crashed, or killed from outside)."""

    status = 502
    code = "browser_exited"
