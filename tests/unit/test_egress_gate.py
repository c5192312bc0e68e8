"""The egress gate of executions and browsers (sandbox_common.egress_gate): each refusal."""

from __future__ import annotations

import pytest

from controller.egress.ask import AskedOnce
from sandbox_common.domains import DomainPolicy, PatternError, parse_patterns
from sandbox_common.egress_account import EgressAccount
from sandbox_common.egress_gate import EgressGate, EgressRules
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
)


def gate() -> EgressGate:
    """A gate that keeps its execution's account (local mode), with small caps."""
    return EgressGate(POLICY, RULES, EgressAccount(max_connections=3, max_bytes=1000))


async def test_an_internal_host_leads_to_its_address_only() -> None:
    one = gate()
    assert await one.resolve("files.test", 443) == ["127.0.0.1"]
    assert await one.resolve("A.Mirror.Test.", 80) == ["10.1.2.3"]
    assert one.account is not None
    assert one.account.refusals == [] and one.account.connections == 2


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
    one = gate()
    with pytest.raises(Refused, match="refused by the sandbox's network policy"):
        await one.resolve(host, port)
    assert one.account is not None and len(one.account.refusals) == 1
    refusal = one.account.refusals[0]
    assert refusal.target == f"{host}:{port}" and reason in refusal.reason
    # Without an account (the proxy of Kubernetes mode) the decision is the same.
    with pytest.raises(Refused, match=reason):
        await EgressGate(POLICY, RULES).resolve(host, port)


async def test_connections_and_bytes_are_capped_per_execution() -> None:
    busy = gate()
    for _ in range(3):
        await busy.resolve("files.test", 443)
    with pytest.raises(Refused):
        await busy.resolve("files.test", 443)
    assert busy.account is not None
    assert "NETWORK_MAX_CONNECTIONS" in busy.account.refusals[-1].reason
    spent = gate()
    assert spent.account is not None
    spent.account.meter.count(1000, upstream=False)
    with pytest.raises(Refused):
        await spent.resolve("files.test", 443)
    assert "NETWORK_MAX_MB" in spent.account.refusals[-1].reason


async def test_names_neither_list_names_are_asked_about_once_per_execution() -> None:
    asked: list[tuple[str, str, int]] = []

    async def ask(execution_id: str, name: str, port: int) -> bool:
        asked.append((execution_id, name, port))
        return name == "yes.test"

    ceiling = DomainPolicy(POLICY.allowed, POLICY.denied, POLICY.ports, ask_unlisted=True)
    rules = EgressRules(internal_hosts={"yes.test": "127.0.0.1", "no.test": "127.0.0.1"})
    one = EgressGate(ceiling, rules, EgressAccount(10, 1000), AskedOnce(ask, "ex-1"))
    assert await one.resolve("yes.test", 443) == ["127.0.0.1"]
    assert await one.resolve("yes.test", 443) == ["127.0.0.1"]
    with pytest.raises(Refused, match="the ask-callback said no"):
        await one.resolve("no.test", 443)
    with pytest.raises(Refused, match="is denied"):  # deny wins: never asked
        await one.resolve("bad.mirror.test", 443)
    assert asked == [("ex-1", "yes.test", 443), ("ex-1", "no.test", 443)]
    # A request that listed its names has said which it needs: nothing is asked.
    narrowed = ceiling.narrowed(["files.test"])
    with pytest.raises(Refused, match=r"not an allowed domain$"):
        await EgressGate(narrowed, rules, None, AskedOnce(ask, "ex-2")).resolve("yes.test", 443)
    assert len(asked) == 2


PUBLIC_WEB = DomainPolicy(denied=parse_patterns(["*.ads.test"]), every_name=True)


async def test_a_browsers_public_web_is_every_name_but_the_denied_and_no_private_address() -> None:
    web = EgressGate(PUBLIC_WEB, RULES)
    assert await web.check("93.184.216.34", 8443) == ["93.184.216.34"]  # any port, IP literals
    assert await web.check("[2606:4700::1111]", 80) == ["2606:4700::1111"]
    # Connected to as checked: a zone would make the literal a name to look up.
    assert await web.check("[2606:4700::1111%eth0]", 80) == ["2606:4700::1111"]
    assert PUBLIC_WEB.decision("my_app.example.com") == "allowed"  # names DNS carries
    for host, port, reason in [
        ("x.ads.test", 443, "is denied"),
        # An internal host is private: on the public web only a session that lists it
        # reaches it (test_a_session_narrows_...).
        ("files.test", 443, "files.test is an internal host: a session must list it"),
        # A search domain of this host would complete it into a name nobody checked.
        ("intranet", 443, "a single-label name"),
        ("localhost", 443, "a single-label name"),
        ("127.0.0.1", 80, "a loopback address"),
        ("[::ffff:10.0.0.1]", 80, "a private address"),
        ("169.254.169.254", 80, "a metadata address"),
        ("0x7f.1", 80, "is not an address"),  # a resolver's spelling: refused, not guessed
    ]:
        with pytest.raises(Refused, match=reason):
            await web.check(host, port)
    # Private networks opened for a browser (BROWSER_ALLOW_PRIVATE_NETWORKS): never metadata,
    # and internal hosts still only by name.
    private = EgressGate(PUBLIC_WEB, EgressRules({"files.test": "127.0.0.1"}, private_allowed=True))
    assert await private.check("10.1.2.3", 80) == ["10.1.2.3"]
    for host in ("169.254.169.254", "files.test"):
        with pytest.raises(Refused, match=r"metadata|internal host"):
            await private.check(host, 80)


async def test_a_session_narrows_the_public_web_to_its_names_on_the_allowed_ports() -> None:
    narrowed = PUBLIC_WEB.narrowed(["docs.example.com", "files.test"])
    assert not narrowed.every_name and narrowed.ports == frozenset({80, 443})
    listed = EgressGate(narrowed, RULES)
    assert await listed.check("files.test", 443) == ["127.0.0.1"]  # listed: mapped
    with pytest.raises(Refused, match="port 8443 is not allowed"):
        await listed.check("files.test", 8443)
    assert narrowed.decision("docs.example.com") == "allowed"
    assert narrowed.decision("example.com") is None
    with pytest.raises(PatternError) as denied:
        PUBLIC_WEB.narrowed(["ok.test", "x.ads.test"])
    assert (denied.value.rule, denied.value.index) == ("denied", 1)
