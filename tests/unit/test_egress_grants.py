"""Egress grants (controller.egress.grants): signed policies that cannot be widened."""

from __future__ import annotations

import pytest

from controller.egress.grants import GrantError, sign, verify
from sandbox_common.domains import DomainPolicy, parse_patterns

pytestmark = pytest.mark.unit

KEY = b"k" * 32
POLICY = DomainPolicy(
    parse_patterns(["api.github.com", "*.example.org"]),
    parse_patterns(["bad.example.org"]),
    frozenset({443}),
)


def test_a_grant_carries_its_execution_and_policy() -> None:
    grant = verify(KEY, sign(KEY, "ex-1", POLICY, 2000.0), now=1000.0)
    assert grant.execution_id == "ex-1" and grant.policy == POLICY and grant.expires_at == 2000


def test_a_tampered_forged_or_expired_grant_is_refused() -> None:
    token = sign(KEY, "ex-1", POLICY, 2000.0)
    payload, _, signature = token.partition(".")
    wider = sign(b"another key", "ex-1", DomainPolicy(parse_patterns(["*.org.evil"])), 2000.0)
    for bad, says in [
        (payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + signature, "signature"),
        (wider.partition(".")[0] + "." + signature, "signature"),
        (wider, "signature"),
        ("no-dot", "not a grant"),
    ]:
        with pytest.raises(GrantError, match=says):
            verify(KEY, bad, now=1000.0)
    with pytest.raises(GrantError, match="expired"):
        verify(KEY, token, now=2001.0)
