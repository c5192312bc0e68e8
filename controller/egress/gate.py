"""One execution's gate: may this connection go out, and to which checked addresses.

The decision, in order: the execution's connection and byte caps, the port, the name
(an IP literal is never allowed: the policy is about names), the domain policy (deny
wins), then what the name resolves to.  Only NETWORK_INTERNAL_HOSTS may lead to a
loopback or private address, and then only to the address given there; every other
name must resolve to public addresses only, all of them, or the connection is refused
(an answer that mixes a public and a private address is an attack, not a choice).  The
service's own ports on this host are refused whatever the name.  Every refusal is kept
with its reason: it becomes a ``network`` violation of the execution.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field

from sandbox_common import addresses
from sandbox_common.domains import DomainPolicy, PatternError, normalize_name
from sandbox_common.forward_proxy import Meter, Refused

MAX_REFUSALS = 32


@dataclass(frozen=True)
class EgressRules:
    """What every execution's gate shares: the deployment's settings, read once."""

    internal_hosts: dict[str, str] = field(default_factory=dict)
    reserved_ports: frozenset[int] = frozenset()
    """Ports of this host that are the service's own: never reached through the proxy."""
    max_connections: int = 64
    max_bytes: int = 256 * 1024 * 1024


@dataclass(frozen=True)
class Refusal:
    target: str
    """``host:port`` as the code asked for it."""
    reason: str


class EgressGate:
    """The gate of one execution's connections (sandbox_common.forward_proxy.Gate)."""

    def __init__(self, policy: DomainPolicy, rules: EgressRules) -> None:
        self.policy = policy
        self.rules = rules
        self.meter = Meter(rules.max_bytes)
        self.connections = 0
        self.refusals: list[Refusal] = []
        self.refused_total = 0

    async def resolve(self, host: str, port: int) -> list[str]:
        try:
            return await self._resolve(host, port)
        except Refused as exc:
            self.refused_total += 1
            if len(self.refusals) < MAX_REFUSALS:
                self.refusals.append(Refusal(f"{host}:{port}", str(exc)))
            raise Refused(f"{host}:{port} refused by the sandbox's network policy: {exc}") from None

    async def _resolve(self, host: str, port: int) -> list[str]:
        rules = self.rules
        if self.connections >= rules.max_connections:
            raise Refused(
                f"the execution's {rules.max_connections} connections are used "
                "(setting NETWORK_MAX_CONNECTIONS)"
            )
        if self.meter.exhausted:
            raise Refused(
                f"the execution's {rules.max_bytes // (1024 * 1024)} MiB are used "
                "(setting NETWORK_MAX_MB)"
            )
        self.connections += 1
        if port not in self.policy.ports:
            raise Refused(f"port {port} is not allowed (setting NETWORK_ALLOWED_PORTS)")
        try:
            name = normalize_name(host)
        except PatternError as exc:
            raise Refused(str(exc)) from None
        decision = self.policy.decision(name)
        if decision == "denied":
            raise Refused(f"{name} is denied (setting NETWORK_DENIED_DOMAINS)")
        if decision is None:
            raise Refused(f"{name} is not an allowed domain")
        internal = rules.internal_hosts.get(name)
        found = [internal] if internal else await self._lookup(name, port)
        for text in found:
            address = addresses.parse(text)
            kind = addresses.classify(address)
            if port in rules.reserved_ports and addresses.is_this_host(address):
                raise Refused(f"{name} leads to the service itself ({address}:{port})")
            if internal is None and kind is not addresses.Kind.PUBLIC:
                raise Refused(
                    f"{name} resolves to {address}, a {kind.value} address "
                    "(only NETWORK_INTERNAL_HOSTS may lead to one)"
                )
        return found

    async def _lookup(self, name: str, port: int) -> list[str]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except OSError as exc:  # not the policy's doing: a 502 to the client, no violation
            raise OSError(f"{name} does not resolve: {exc.strerror or exc}") from None
        return list(dict.fromkeys(str(info[4][0]) for info in infos))
