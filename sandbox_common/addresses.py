"""Address safety: what kind of place an IP address leads to, whatever its spelling.

The one module that every connection made on someone else's behalf asks: the upload
client (controller.uploads), and the gate (sandbox_common.egress_gate) of the egress
proxy and of the browser agent's proxy.  Two copies of this rule drift, and a drift is
a way around it, so each policy there decides only what to do with a ``Kind``; what the
address *is* is decided here, once.

An IPv6 address can carry an IPv4 one, and the kernel or a NAT64 gateway may deliver it
there: IPv4-mapped (``::ffff:10.0.0.1``), IPv4-compatible (``::10.0.0.1``), NAT64 with the
well-known and the local-use prefixes (``64:ff9b::/96``, ``64:ff9b:1::/48``), 6to4
(``2002:0a00:0001::``) and Teredo.  Such an address is judged by the IPv4 address inside,
so ``64:ff9b::a9fe:a9fe`` is the metadata service, not a public host.
"""

from __future__ import annotations

import enum
import ipaddress
import socket

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")

METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure WireServer (a public address, but the platform's)
        "192.0.0.192",  # Oracle Cloud (legacy)
    )
)


class Kind(enum.Enum):
    """What an address leads to.  Only PUBLIC is the open internet."""

    PUBLIC = "public"
    LOOPBACK = "loopback"
    PRIVATE = "private"
    """RFC 1918, unique-local, CGNAT, and every other non-global, non-special range."""
    LINK_LOCAL = "link-local"
    METADATA = "metadata"
    MULTICAST = "multicast"
    UNSPECIFIED = "unspecified"


def parse(text: str) -> IPAddress:
    """An address as the resolver returns it (an IPv6 zone such as ``%eth0`` dropped)."""
    return ipaddress.ip_address(text.split("%", 1)[0])


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4, Teredo)."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if any(ip in prefix for prefix in _NAT64) or (
        ip in _IPV4_COMPATIBLE and int(ip) > 1  # :: and ::1 are themselves
    ):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def canonical(ip: IPAddress) -> IPAddress:
    """The address a connection to ``ip`` really reaches: the embedded IPv4 one, if any."""
    return embedded_ipv4(ip) or ip


def classify(ip: IPAddress) -> Kind:
    ip = canonical(ip)
    if ip.is_unspecified or ip in _THIS_NETWORK:
        return Kind.UNSPECIFIED
    if ip in METADATA:
        return Kind.METADATA
    if ip.is_multicast:
        return Kind.MULTICAST
    if ip.is_loopback:
        return Kind.LOOPBACK
    if ip.is_link_local:
        return Kind.LINK_LOCAL
    if ip.is_global and not ip.is_reserved:
        return Kind.PUBLIC
    return Kind.PRIVATE


def is_public(ip: IPAddress) -> bool:
    return classify(ip) is Kind.PUBLIC


def is_this_host(ip: IPAddress) -> bool:
    """Whether ``ip`` is an address of this host (loopback, unspecified, or bound here).

    Binding a socket to an address succeeds only for the host's own addresses: a cheap,
    exact answer that needs no interface listing.
    """
    ip = canonical(ip)
    if ip.is_loopback or ip.is_unspecified:
        return True
    family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((str(ip), 0))
    except OSError:
        return False
    return True


def destination_kind(ip: IPAddress) -> Kind:
    """What a connection from this host to ``ip`` reaches: ``classify``'s kind, except
    that an address of this host, on any of its interfaces and whatever its range, is
    LOOPBACK: it leads to this host's own services, as 127.0.0.1 does."""
    kind = classify(ip)
    if kind in (Kind.PUBLIC, Kind.PRIVATE) and is_this_host(ip):
        return Kind.LOOPBACK
    return kind


def kind_text(ip: IPAddress, kind: Kind) -> str:
    """``kind`` in words, for a refusal: "a loopback address", "an address of this host"."""
    if kind is Kind.LOOPBACK and not canonical(ip).is_loopback:
        return "an address of this host"
    return f"a {kind.value} address"


HostPort = tuple[str, int | None]


def parse_host_ports(value: str) -> frozenset[HostPort]:
    """``"files.example, 127.0.0.1:9000, [::1]:80"`` -> {(host, port or None), ...}.

    Host names are lower-cased; a bad port raises ValueError naming the entry.
    """
    entries = set()
    for raw in value.split(","):
        item = raw.strip().lower()
        if not item:
            continue
        host, port = item, None
        try:
            if item.startswith("["):  # [v6]:port
                host, _, rest = item[1:].partition("]")
                port = int(rest[1:]) if rest.startswith(":") else None
            elif item.count(":") == 1:
                host, _, port_text = item.partition(":")
                port = int(port_text)
        except ValueError:
            raise ValueError(f"bad port in {raw.strip()!r}") from None
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"bad port in {raw.strip()!r}")
        entries.add((host, port))
    return frozenset(entries)
