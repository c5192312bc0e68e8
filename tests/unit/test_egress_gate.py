"""One execution's egress gate (controller.egress.gate): each refusal, with its reason kept."""

from __future__ import annotations

import pytest

from controller.egress.gate import EgressGate, EgressRules
from sandbox_common.domains import DomainPolicy, parse_patterns
from sandbox_common.forward_proxy import Refused

pytestmark = pytest.mark.unit

POLICY = DomainPolicy(
    parse_patterns(["files.test", "*.mirror.test", "localhost", "service.test"]),
    parse_patterns(["bad.mirror.test"]),
    frozenset({80, 443, 8080}),
)
RULES = EgressRules(
    internal_hosts={"files.test": "127.0.0.1", "a.mirror.test": "10.1.2.3", "service.test": "::1"},
    reserved_ports=frozenset({8080}),
    max_connections=3,
    max_bytes=1000,
)


async def test_an_internal_host_leads_to_its_address_only() -> None:
    gate = EgressGate(POLICY, RULES)
    assert await gate.resolve("files.test", 443) == ["127.0.0.1"]
    assert await gate.resolve("A.Mirror.Test.", 80) == ["10.1.2.3"]
    assert gate.refusals == [] and gate.connections == 2


@pytest.mark.parametrize(
    ("host", "port", "reason"),
    [
        ("files.test", 22, "port 22 is not allowed"),
        ("203.0.113.7", 443, "is an IP address"),
        ("[::1]", 443, "is an IP address"),
        ("bad.mirror.test", 443, "is denied"),
        ("evil.test", 443, "not an allowed domain"),
        ("filestest", 443, "not an allowed domain"),
        ("files.test.evil", 443, "not an allowed domain"),
        ("localhost", 443, "a loopback address"),  # allowed by name, resolves to loopback
        ("service.test", 8080, "leads to the service itself"),  # even when internal
    ],
)
async def test_refusals_say_why(host: str, port: int, reason: str) -> None:
    gate = EgressGate(POLICY, RULES)
    with pytest.raises(Refused, match="refused by the sandbox's network policy"):
        await gate.resolve(host, port)
    assert len(gate.refusals) == 1
    assert gate.refusals[0].target == f"{host}:{port}" and reason in gate.refusals[0].reason


async def test_connections_and_bytes_are_capped_per_execution() -> None:
    gate = EgressGate(POLICY, RULES)
    for _ in range(3):
        await gate.resolve("files.test", 443)
    with pytest.raises(Refused):
        await gate.resolve("files.test", 443)
    assert "NETWORK_MAX_CONNECTIONS" in gate.refusals[-1].reason
    spent = EgressGate(POLICY, RULES)
    spent.meter.count(1000, upstream=False)
    with pytest.raises(Refused):
        await spent.resolve("files.test", 443)
    assert "NETWORK_MAX_MB" in spent.refusals[-1].reason
