"""Which upload targets the service may contact: a pure policy over host names and addresses.

Uploads are requests made by the service itself, so an unchecked ``fileUploadUrl`` would
let any caller reach the service's own network (SSRF).  Link-local, metadata, multicast
and unspecified addresses are always refused; loopback and private addresses, and every
address of this host (as loopback), only for hosts listed in UPLOAD_ALLOWED_HOSTS; and
a non-empty list restricts targets to its hosts alone.  What an address *is* (whatever
its spelling) is sandbox_common.addresses'.
"""

from __future__ import annotations

from dataclasses import dataclass

from sandbox_common.addresses import HostPort, Kind, destination_kind, kind_text, parse

ALWAYS_REFUSED = frozenset({Kind.LINK_LOCAL, Kind.METADATA, Kind.MULTICAST, Kind.UNSPECIFIED})


@dataclass(frozen=True)
class UploadPolicy:
    allowed: frozenset[HostPort] = frozenset()

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
        ip = parse(address)
        kind = destination_kind(ip)
        if kind in ALWAYS_REFUSED:
            what = (
                kind.value
                if kind in (Kind.MULTICAST, Kind.UNSPECIFIED)
                else "link-local or metadata"
            )
            return f"{host} resolves to {ip}, a {what} address (always refused)"
        if kind is not Kind.PUBLIC and not self.listed(host, port):
            return (
                f"{host} resolves to {ip}, {kind_text(ip, kind)}; list the host in "
                "UPLOAD_ALLOWED_HOSTS to allow it"
            )
        return None
