"""Which upload targets the service may contact: a pure policy over host names and addresses.

Uploads are requests made by the service itself, so an unchecked ``fileUploadUrl`` would
let any caller reach the service's own network (SSRF).  Link-local and cloud metadata
addresses are always refused; loopback and private addresses only for hosts listed in
UPLOAD_ALLOWED_HOSTS; and a non-empty list restricts targets to its hosts alone.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALWAYS_REFUSED = tuple(
    ipaddress.ip_network(n)
    for n in (
        "169.254.0.0/16",  # link-local, including 169.254.169.254 (AWS, GCP, Azure metadata)
        "fe80::/10",  # IPv6 link-local
        "fd00:ec2::254/128",  # AWS metadata over IPv6
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "0.0.0.0/8",
        "::/128",
    )
)


def parse_allowed_hosts(value: str) -> frozenset[tuple[str, int | None]]:
    """``"files.example, 127.0.0.1:9000"`` -> {("files.example", None), ("127.0.0.1", 9000)}."""
    entries = set()
    for raw in value.split(","):
        item = raw.strip().lower()
        if not item:
            continue
        host, port = item, None
        if item.startswith("["):  # [v6]:port
            host, _, rest = item[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") else None
        elif item.count(":") == 1:
            host, _, port_text = item.partition(":")
            port = int(port_text)
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"bad port in {raw.strip()!r}")
        entries.add((host, port))
    return frozenset(entries)


@dataclass(frozen=True)
class UploadPolicy:
    allowed: frozenset[tuple[str, int | None]] = frozenset()

    def listed(self, host: str, port: int) -> bool:
        host = host.lower()
        return (host, None) in self.allowed or (host, port) in self.allowed

    def host_refusal(self, host: str, port: int) -> str | None:
        """Why a host name may not be a target at all (before any resolution)."""
        if self.allowed and not self.listed(host, port):
            return f"{host}:{port} is not in UPLOAD_ALLOWED_HOSTS"
        return None

    def address_refusal(self, host: str, port: int, address: str) -> str | None:
        """Why this resolved address of ``host`` may not be connected to."""
        ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in net for net in ALWAYS_REFUSED) or ip.is_multicast:
            return f"{host} resolves to {ip}, a link-local or metadata address (always refused)"
        if not ip.is_global and not self.listed(host, port):
            return (
                f"{host} resolves to {ip}, a loopback or private address; list the host "
                "in UPLOAD_ALLOWED_HOSTS to allow it"
            )
        return None
