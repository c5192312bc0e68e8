"""Egress grants: an execution's network policy, signed, for a proxy that keeps no state.

The controller signs each execution's policy (and its deadline) with a key it shares
with the egress proxy only (a Secret of the chart); the runner pod presents the grant
on every connection as ``Proxy-Authorization: Bearer <grant>``.  Any proxy replica can
then check a connection without asking anyone, and a grant names one execution until
its deadline, for the names it was given, nothing more.  A grant is not a secret from
the execution (its runner holds it), and it cannot be widened: changing one byte
breaks the signature.

    grant = base64url(JSON {id, exp, allowed, denied, ports, ask}) "." base64url(HMAC-SHA256)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from sandbox_common.domains import DomainPolicy, PatternError, parse_patterns


class GrantError(ValueError):
    """Not a valid grant: malformed, signed with another key, or past its deadline."""


@dataclass(frozen=True)
class Grant:
    execution_id: str
    policy: DomainPolicy
    expires_at: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(key: bytes, execution_id: str, policy: DomainPolicy, expires_at: float) -> str:
    body = json.dumps(
        {
            "id": execution_id,
            "exp": int(expires_at),
            "allowed": [str(p) for p in policy.allowed],
            "denied": [str(p) for p in policy.denied],
            "ports": sorted(policy.ports),
            "ask": policy.ask_unlisted,
        },
        separators=(",", ":"),
    ).encode()
    payload = _b64(body)
    mac = hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest()
    return f"{payload}.{_b64(mac)}"


def verify(key: bytes, token: str, now: float | None = None) -> Grant:
    payload, sep, signature = token.partition(".")
    if not sep:
        raise GrantError("not a grant")
    expected = hmac.new(key, payload.encode("ascii", "replace"), hashlib.sha256).digest()
    try:
        given = _unb64(signature)
    except (binascii.Error, ValueError):
        raise GrantError("not a grant") from None
    if not hmac.compare_digest(expected, given):  # before reading a byte of the payload
        raise GrantError("the grant's signature does not match")
    try:
        document = json.loads(_unb64(payload))
        expires_at = float(document["exp"])
        grant = Grant(
            str(document["id"]),
            DomainPolicy(
                parse_patterns(document["allowed"]),
                parse_patterns(document["denied"]),
                frozenset(int(p) for p in document["ports"]),
                ask_unlisted=document["ask"] is True,
            ),
            expires_at,
        )
    except (KeyError, TypeError, ValueError, PatternError, binascii.Error):
        raise GrantError("the grant's policy is malformed") from None
    if (time.time() if now is None else now) > expires_at:
        raise GrantError("the grant has expired (its execution is over)")
    return grant
