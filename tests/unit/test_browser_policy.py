"""The browser's URL policy (schemes) and its public web's gate on addresses."""

from __future__ import annotations

import ipaddress

import pytest
from browser_agent.urlpolicy import UrlRefused, check_navigation_url

from sandbox_common.addresses import is_public, is_this_host
from sandbox_common.egress_gate import EgressRules
from sandbox_common.forward_proxy import Refused
from tests.support import public_web


async def refused(address: str, port: int, rules: EgressRules | None = None) -> bool:
    """Whether a browser no session narrowed may not reach ``address:port``."""
    try:
        await public_web(rules or EgressRules()).check(address, port)
    except Refused:
        return True
    return False


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/",
        "https://example.com:8443/a?b=c#d",
        "HTTPS://EXAMPLE.COM",
        "http://127.0.0.1:8080/",
        "http://[2001:db8::1]/",
        "about:blank",
        "ABOUT:BLANK",
    ],
)
def test_allowed_urls(url: str) -> None:
    assert check_navigation_url(url)


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("file:///etc/passwd", "scheme_forbidden"),
        ("FILE:///etc/passwd", "scheme_forbidden"),
        ("chrome://settings", "scheme_forbidden"),
        ("chrome-extension://abc/x.html", "scheme_forbidden"),
        ("devtools://devtools/bundled/inspector.html", "scheme_forbidden"),
        ("about:config", "scheme_forbidden"),
        ("about:srcdoc", "scheme_forbidden"),
        ("data:text/html,<script>1</script>", "scheme_forbidden"),
        ("javascript:alert(1)", "scheme_forbidden"),
        ("view-source:https://example.com", "scheme_forbidden"),
        ("blob:https://example.com/uuid", "scheme_forbidden"),
        ("filesystem:https://example.com/temporary/x", "scheme_forbidden"),
        ("ws://example.com/", "scheme_forbidden"),
        ("ftp://example.com/", "scheme_forbidden"),
        ("http://user:pass@example.com/", "credentials_forbidden"),
        ("http://user@example.com/", "credentials_forbidden"),
        ("example.com", "url_invalid"),
        ("//example.com", "url_invalid"),
        ("http://", "url_invalid"),
        ("http://example.com:99999/", "url_invalid"),
        ("http://example.com:0/", "url_invalid"),
        ("http://exa mple.com/", "url_invalid"),
        ("http://example.com/\n", "url_invalid"),
        ("\thttp://example.com/", "url_invalid"),
        ("http://[::1/", "url_invalid"),
    ],
)
def test_refused_urls(url: str, rule: str) -> None:
    with pytest.raises(UrlRefused) as refused:
        check_navigation_url(url)
    assert refused.value.rule == rule


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


NON_PUBLIC = [
    "127.0.0.1",
    "127.9.9.9",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "0.0.0.0",
    "192.0.0.8",
    "198.18.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "64:ff9b::a00:1",
    "224.0.0.1",
    "ff02::1",
]


@pytest.mark.parametrize("address", NON_PUBLIC)
async def test_non_public_addresses_are_refused_by_default(address: str) -> None:
    assert not is_public(ip(address))
    assert await refused(address, 80)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111"])
async def test_public_addresses_are_allowed(address: str) -> None:
    assert not await refused(address, 443)
    assert not await refused(f"[{address}]" if ":" in address else address, 8443)


async def test_allow_private_opens_private_ranges_but_not_reserved_ports() -> None:
    rules = EgressRules(private_allowed=True, reserved_ports=frozenset({8080}))
    assert not await refused("10.1.2.3", 80, rules)
    assert not await refused("127.0.0.1", 8081, rules)
    assert await refused("127.0.0.1", 8080, rules)
    assert await refused("127.0.0.2", 8080, rules)
    assert await refused("::1", 8080, rules)
    assert await refused("::ffff:127.0.0.1", 8080, rules)
    # The reserved port of another host is not the controller's.
    assert not await refused("10.1.2.3", 8080, rules)


async def test_metadata_multicast_and_unspecified_are_never_destinations() -> None:
    rules = EgressRules(private_allowed=True)
    for address in ("0.0.0.0", "::", "224.0.0.1", "ff02::1", "169.254.169.254", "fd00:ec2::254"):
        assert await refused(address, 80, rules), address


def test_this_host_includes_loopback_and_its_own_addresses() -> None:
    assert is_this_host(ip("127.0.0.1"))
    assert is_this_host(ip("127.3.2.1"))
    assert is_this_host(ip("::1"))
    assert not is_this_host(ip("203.0.113.7"))
