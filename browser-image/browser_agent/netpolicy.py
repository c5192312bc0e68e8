"""Which network destinations the browser may reach: a pure decision on a resolved address.

The agent's proxy resolves every name itself, asks ``refusal`` about each address, and
connects only to an address it checked, so a name that resolves to a private address
(or re-resolves to one later) gets no further than the proxy.  What an address is, in
any spelling, is decided by sandbox_common.addresses (shared with the controller's
uploads); this module only decides what a session may do with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sandbox_common.addresses import IPAddress, Kind, canonical, classify, is_this_host


@dataclass(frozen=True)
class DestinationPolicy:
    """What a session may reach.

    ``allow_private``: also loopback, private and link-local ranges (never the cloud
    metadata addresses).  ``local_ports``: ports never reachable on this host's own
    addresses, whatever else is allowed (the controller's port, the agent's own API
    and proxy ports).
    """

    allow_private: bool = False
    local_ports: frozenset[int] = field(default_factory=frozenset)


def refusal(ip: IPAddress, port: int, policy: DestinationPolicy) -> str | None:
    """Why ``ip:port`` may not be reached, or None when it may."""
    kind = classify(ip)
    ip = canonical(ip)
    if kind in (Kind.MULTICAST, Kind.UNSPECIFIED):
        return f"{ip} is not a unicast destination"
    if kind is Kind.METADATA:
        return f"{ip} is a cloud metadata address (always refused)"
    if port in policy.local_ports and is_this_host(ip):
        return f"port {port} of this host is reserved for the service"
    if policy.allow_private or kind is Kind.PUBLIC:
        return None
    return (
        f"{ip} is a loopback, private or otherwise non-public address "
        "(setting BROWSER_ALLOW_PRIVATE_NETWORKS)"
    )
