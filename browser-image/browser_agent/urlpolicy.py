"""Which URLs a session may navigate to, by scheme and form (the destination is checked later).

Pure: the controller refuses a bad URL before it reaches an agent, and the agent checks
again, since it is reachable on its own in Kubernetes mode.  Whether the *destination*
may be reached is decided by the agent's proxy, on the name and its resolved addresses
(sandbox_common.egress_gate).
"""

from __future__ import annotations

from urllib.parse import urlsplit

ALLOWED_SCHEMES = frozenset({"http", "https"})
ABOUT_BLANK = "about:blank"


class UrlRefused(ValueError):
    """A navigation URL the policy refuses; ``rule`` names the rule it broke."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


def check_navigation_url(url: str) -> str:
    """Return ``url`` if a session may navigate to it, else raise UrlRefused.

    Only http(s) with a host, and ``about:blank``.  Everything else (file:, chrome:,
    about:*, data:, javascript:, view-source:, blob:, filesystem:, ws:, ...) is refused:
    each of them reads local state, runs code in a privileged origin, or bypasses the
    network policy.
    """
    if url != url.strip() or any(ord(c) < 0x21 or c == "\x7f" for c in url):
        raise UrlRefused("url_invalid", "URL contains whitespace or control characters")
    if url.lower() == ABOUT_BLANK:
        return ABOUT_BLANK
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRefused("url_invalid", f"not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if not scheme:
        raise UrlRefused("url_invalid", "URL needs a scheme: http:// or https://")
    if scheme not in ALLOWED_SCHEMES:
        raise UrlRefused(
            "scheme_forbidden",
            f"scheme {scheme!r} is not allowed; only http, https and about:blank",
        )
    if not parts.hostname:
        raise UrlRefused("url_invalid", "URL has no host")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("credentials_forbidden", "URLs with user:password@ are not allowed")
    if port == 0:
        raise UrlRefused("url_invalid", "port 0 is not a valid destination")
    return url
