"""The browser's URL policy (schemes) and destination policy (resolved addresses)."""

from __future__ import annotations

import ipaddress

import pytest
from browser_agent.netpolicy import DestinationPolicy, refusal
from browser_agent.urlpolicy import UrlRefused, check_navigation_url

from sandbox_common.addresses import is_public, is_this_host


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
def test_non_public_addresses_are_refused_by_default(address: str) -> None:
    assert not is_public(ip(address))
    assert refusal(ip(address), 80, DestinationPolicy()) is not None


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal(ip(address), 443, DestinationPolicy()) is None


def test_allow_private_opens_private_ranges_but_not_reserved_ports() -> None:
    policy = DestinationPolicy(allow_private=True, local_ports=frozenset({8080}))
    assert refusal(ip("10.1.2.3"), 80, policy) is None
    assert refusal(ip("127.0.0.1"), 8081, policy) is None
    assert refusal(ip("127.0.0.1"), 8080, policy) is not None
    assert refusal(ip("127.0.0.2"), 8080, policy) is not None
    assert refusal(ip("::1"), 8080, policy) is not None
    assert refusal(ip("::ffff:127.0.0.1"), 8080, policy) is not None
    # The reserved port of another host is not the controller's.
    assert refusal(ip("10.1.2.3"), 8080, policy) is None


def test_multicast_and_unspecified_are_never_destinations() -> None:
    policy = DestinationPolicy(allow_private=True)
    for address in ("0.0.0.0", "::", "224.0.0.1", "ff02::1"):
        assert refusal(ip(address), 80, policy) is not None


def test_this_host_includes_loopback_and_its_own_addresses() -> None:
    assert is_this_host(ip("127.0.0.1"))
    assert is_this_host(ip("127.3.2.1"))
    assert is_this_host(ip("::1"))
    assert not is_this_host(ip("203.0.113.7"))
