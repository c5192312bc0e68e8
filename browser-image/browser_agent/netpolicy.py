"""Which network destinations the browser may reach: a pure decision on a resolved address.

The agent's proxy resolves every name itself, asks ``refusal`` about each address, and
connects only to an address it checked, so a name that resolves to a private address
(or re-resolves to one later) gets no further than the proxy.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class DestinationPolicy:
    """What a session may reach.

    ``allow_private``: also loopback, private, link-local and other non-global ranges.
    ``local_ports``: ports never reachable on this host's own addresses, whatever else
    is allowed (the controller's port, the agent's own API and proxy ports).
    """

    allow_private: bool = False
    local_ports: frozenset[int] = field(default_factory=frozenset)


def unwrap(ip: IPAddress) -> IPAddress:
    """The IPv4 address behind an IPv4-mapped or NAT64-style IPv6 form, if any."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in ipaddress.IPv6Network("64:ff9b::/96"):
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def is_public(ip: IPAddress) -> bool:
    """Globally routable unicast: not loopback, private, link-local, CGNAT, reserved, ..."""
    ip = unwrap(ip)
    return ip.is_global and not ip.is_multicast


def is_this_host(ip: IPAddress) -> bool:
    """Whether ``ip`` is an address of this host (loopback, unspecified, or bound here).

    Binding a socket to an address succeeds only for the host's own addresses: a cheap,
    exact answer that needs no interface listing.
    """
    ip = unwrap(ip)
    if ip.is_loopback or ip.is_unspecified:
        return True
    family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((str(ip), 0))
    except OSError:
        return False
    return True


def refusal(ip: IPAddress, port: int, policy: DestinationPolicy) -> str | None:
    """Why ``ip:port`` may not be reached, or None when it may."""
    ip = unwrap(ip)
    if ip.is_multicast or ip.is_unspecified:
        return f"{ip} is not a unicast destination"
    if port in policy.local_ports and is_this_host(ip):
        return f"port {port} of this host is reserved for the service"
    if policy.allow_private or is_public(ip):
        return None
    return (
        f"{ip} is a loopback, private or otherwise non-public address "
        "(setting BROWSER_ALLOW_PRIVATE_NETWORKS)"
    )
