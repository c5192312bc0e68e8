"""Domain patterns, the ceiling and its narrowing (sandbox_common.domains), as data."""

from __future__ import annotations

import pytest

from sandbox_common.domains import (
    DomainPolicy,
    Pattern,
    PatternError,
    parse_internal_hosts,
    parse_patterns,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        ("*", "too_broad"),
        ("*.", "too_broad"),
        ("*.com", "too_broad"),
        ("*.co.uk", "too_broad"),
        ("1.2.3.4", "ip_literal"),
        ("[::1]", "ip_literal"),
        ("::ffff:10.0.0.1", "ip_literal"),
        # What the resolver reads as an address, and what IDNA turns into one.
        ("134744072", "ip_literal"),
        ("0x7f.1", "ip_literal"),
        ("1.2.3.04", "ip_literal"),
        ("a.123", "ip_literal"),
        ("8.8.8.8\xad", "ip_literal"),
        ("1.1.1.\xb9", "ip_literal"),
        ("x\n.example.com", "invalid_name"),
        ("a*.example.com", "invalid_wildcard"),
        ("exa mple.com", "invalid_name"),
        ("-bad.example.com", "invalid_name"),
        ("a" * 64 + ".com", "invalid_name"),
        ("", "empty"),
        # IDNA2003 (Python) and UTS 46 (browsers) map these apart: fass.de or xn--fa-hia.de.
        ("faß.de", "ambiguous_name"),
        ("*.\u03c3\u03bf\u03c6\u03bf\u03c2.gr", "ambiguous_name"),
        ("a\u200db.example", "ambiguous_name"),
    ],
)
def test_refused_patterns_name_their_rule(raw: str, rule: str) -> None:
    with pytest.raises(PatternError) as caught:
        Pattern.parse(raw)
    assert caught.value.rule == rule


def test_names_are_compared_in_one_form() -> None:
    assert Pattern.parse("API.GitHub.com.") == Pattern("api.github.com")
    assert Pattern.parse("*.Example.ORG") == Pattern("example.org", wildcard=True)
    assert Pattern.parse("bücher.example") == Pattern("xn--bcher-kva.example")
    assert str(Pattern.parse("*.example.org")) == "*.example.org"


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("github.com", "github.com", True),
        ("github.com", "api.github.com", False),
        ("github.com", "evilgithub.com", False),
        ("github.com", "github.com.evil.test", False),
        ("*.github.com", "api.github.com", True),
        ("*.github.com", "a.b.github.com", True),
        ("*.github.com", "github.com", False),
        ("*.github.com", "evilgithub.com", False),
        ("*.github.com", "api.github.com.evil.test", False),
    ],
)
def test_matching_is_by_whole_labels(pattern: str, name: str, matches: bool) -> None:
    assert Pattern.parse(pattern).matches(name) is matches


def test_deny_wins_over_allow() -> None:
    policy = DomainPolicy(parse_patterns(["*.example.org"]), parse_patterns(["bad.example.org"]))
    assert policy.decision("good.example.org") == "allowed"
    assert policy.decision("bad.example.org") == "denied"
    assert policy.decision("x.bad.example.org") == "allowed"  # the exact name only
    assert policy.decision("example.net") is None


def test_a_request_may_only_narrow_the_ceiling() -> None:
    ceiling = DomainPolicy(
        parse_patterns(["*.example.org", "api.github.com"]),
        parse_patterns(["*.secret.example.org"]),
        frozenset({443}),
    )
    narrowed = ceiling.narrowed(["a.example.org", "*.docs.example.org", "api.github.com"])
    assert {str(p) for p in narrowed.allowed} == {
        "a.example.org",
        "api.github.com",
        "*.docs.example.org",
    }
    assert narrowed.denied == ceiling.denied and narrowed.ports == ceiling.ports
    for wider, rule in [
        ("example.org", "outside_ceiling"),  # the wildcard names only what is under it
        ("*.org", "too_broad"),
        ("*.github.com", "outside_ceiling"),
        ("github.com", "outside_ceiling"),
        ("x.secret.example.org", "denied"),
        ("*.secret.example.org", "denied"),
        ("*.a.secret.example.org", "denied"),
    ]:
        with pytest.raises(PatternError) as caught:
            ceiling.narrowed([wider])
        assert caught.value.rule == rule, wider
    assert not ceiling.narrowed([]).allows_anything


def test_an_empty_ceiling_allows_nothing() -> None:
    assert not DomainPolicy().allows_anything
    assert not DomainPolicy(parse_patterns(["a.example"]), ports=frozenset()).allows_anything


def test_internal_hosts_map_names_to_addresses() -> None:
    assert parse_internal_hosts("Pypi.Internal=10.0.0.5, git.internal=[::1],") == {
        "pypi.internal": "10.0.0.5",
        "git.internal": "::1",
    }
    for bad in ("pypi.internal", "pypi.internal=not-an-ip", "meta=169.254.169.254", "x=0.0.0.0"):
        with pytest.raises(ValueError, match=r"pypi\.internal|meta|x="):
            parse_internal_hosts(bad)
