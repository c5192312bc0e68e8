"""Egress grants (controller.egress.grants): signed policies that cannot be widened, and
the proxy's gates made from them (controller.egress.server)."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from controller.egress.grants import GrantError, sign, verify
from controller.egress.server import GrantGates
from sandbox_common.domains import DomainPolicy, parse_patterns
from sandbox_common.egress_gate import EgressRules
from sandbox_common.forward_proxy import Unauthorized

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


async def test_the_proxy_takes_each_connections_gate_from_its_grant() -> None:
    asked: list[str] = []

    async def ask(execution_id: str, name: str, port: int) -> bool:
        asked.append(f"{execution_id} {name}")
        return True

    gates = GrantGates(KEY, EgressRules(internal_hosts={"new.test": "127.0.0.1"}), ask)
    token = sign(KEY, "ex-9", replace(POLICY, ask_unlisted=True), time.time() + 60)
    header = f"Proxy-Authorization: Bearer {token}"
    for _ in range(2):  # two connections of one execution: one question
        gate = gates(header.encode())
        assert await gate.resolve("new.test", 443) == ["127.0.0.1"]
        assert gate.owner == "ex-9"  # its name lookups wait on its own alone
    assert asked == ["ex-9 new.test"]
    for bad in (b"", b"Proxy-Authorization: Basic eDp5", b"Proxy-Authorization: Bearer forged.x"):
        with pytest.raises(Unauthorized):
            gates(bad)
