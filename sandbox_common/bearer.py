"""The bearer-token check of every HTTP endpoint of the product: controller, agents, runners.

Exactly one ``Authorization`` header with the ``Bearer`` scheme (case-blind, RFC 6750).
Two such headers are refused rather than one picked: a proxy in front and the service
behind could pick differently.  Tokens are compared as SHA-256 digests with
``hmac.compare_digest``: constant time, independent of the token's length, and the
expected side need only ever hold a digest (a pod spec or a keys file carries no secret).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Iterable, Sequence

MIN_TOKEN_CHARS = 16
"""Shortest token any endpoint of the product accepts as its secret."""


class Verdict(enum.Enum):
    OK = "ok"
    MISSING = "missing"
    """No usable credentials: no header, another scheme, an empty token, or two headers."""
    INVALID = "invalid"


def digest(token: str | bytes) -> bytes:
    """What the expected side keeps of a token."""
    return hashlib.sha256(token.encode() if isinstance(token, str) else token).digest()


def authorization_values(headers: Iterable[tuple[bytes, bytes]]) -> list[bytes]:
    """Every ``Authorization`` header of an ASGI scope's raw header list."""
    return [value for name, value in headers if name.lower() == b"authorization"]


def credentials(values: Sequence[bytes]) -> bytes | None:
    """The token of the one ``Authorization: Bearer <token>`` header, else None."""
    if len(values) != 1:
        return None
    scheme, _, token = values[0].strip().partition(b" ")
    token = token.strip()
    if scheme.lower() != b"bearer" or not token:
        return None
    return token


def check(values: Sequence[bytes], expected_digest: bytes) -> Verdict:
    """Judge the ``Authorization`` header values of one request against a token's digest."""
    token = credentials(values)
    if token is None:
        return Verdict.MISSING
    if not hmac.compare_digest(digest(token), expected_digest):
        return Verdict.INVALID
    return Verdict.OK
