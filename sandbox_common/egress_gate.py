"""The gate of a sandbox's connections: may this one go out, to which checked addresses.

One gate for both proxies: the egress proxy of executions (controller.egress, a runner
pod's relay) and the browser agent's. The decision, in order: the execution's caps (when
this gate keeps its account), the port, the name (an IP literal is never allowed: the
policy is about names, unless it is a browser's public web), the domain policy (deny
wins; a name neither list names is asked about when there is an ask-callback), then what
the name resolves to. Only NETWORK_INTERNAL_HOSTS may lead to a loopback or private
address (an address of this host is a loopback one, whatever its range), and then only
to the address given there (or, for a browser, BROWSER_ALLOW_PRIVATE_NETWORKS to any but
metadata); every other name must resolve to public addresses only, all of them, or the
connection is refused (an answer that mixes a public and a private address is an attack,
not a choice). The service's own ports on this host are refused whatever the name. Names
are looked up by sandbox_common.resolver, as the gate's owner (a caller's key, a
session): never in the loop's default executor.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sandbox_common import addresses, resolver
from sandbox_common.domains import NEVER_INTERNAL, DomainPolicy, PatternError, normalize_name
from sandbox_common.egress_account import EgressAccount
from sandbox_common.forward_proxy import Refused


@dataclass(frozen=True)
class EgressRules:
    """What every execution's gate shares: the deployment's settings, read once."""

    internal_hosts: dict[str, str] = field(default_factory=dict)
    reserved_ports: frozenset[int] = frozenset()
    """Ports of this host that are the service's own: never reached through the proxy."""
    private_allowed: bool = False
    """Any name may lead to a loopback or private address, never to a metadata one (a
    browser with BROWSER_ALLOW_PRIVATE_NETWORKS)."""


class EgressGate:
    """One execution's or browser session's gate (sandbox_common.forward_proxy.Gate).

    With ``account``, it also counts the connections against the execution's caps and
    keeps the refusals (local mode); a runner pod's relay keeps them there instead.
    """

    def __init__(
        self,
        policy: DomainPolicy,
        rules: EgressRules,
        account: EgressAccount | None = None,
        ask: Callable[[str, int], Awaitable[bool]] | None = None,
        owner: str = "",
    ) -> None:
        """``ask``: the execution's ask-callback (controller.egress.ask), for the names
        that neither list names, when its policy lets them be asked about; ``owner``:
        whose name lookups these are (sandbox_common.resolver)."""
        self.policy = policy
        self.rules = rules
        self.account = account
        self.ask = ask if policy.ask_unlisted else None
        self.owner = owner

    async def resolve(self, host: str, port: int) -> list[str]:
        target = f"{host}:{port}"
        try:
            if self.account is not None and (reason := self.account.admit()) is not None:
                raise Refused(reason)
            return await self.check(host, port)
        except Refused as exc:
            if self.account is not None:
                self.account.refuse(target, str(exc))
            raise Refused(f"{target} refused by the sandbox's network policy: {exc}") from None

    async def check(self, host: str, port: int) -> list[str]:
        """The checked addresses of ``host``; Refused with the bare reason if none may be."""
        rules = self.rules
        if not self.policy.allows_port(port):
            raise Refused(f"port {port} is not allowed (setting NETWORK_ALLOWED_PORTS)")
        try:
            name = normalize_name(host)
        except PatternError as exc:
            if exc.rule == "ip_literal" and self.policy.every_name:
                # The canonical spelling is what is connected to: a zone or a resolver's
                # spelling would be looked up as a name.
                return self._checked(host, port, [_address_text(host)], internal=False)
            raise Refused(str(exc)) from None
        internal = rules.internal_hosts.get(name)
        if self.policy.every_name and (internal or "." not in name):
            # The public web is public names: an internal host is reached by a session
            # that lists it, and a single label would be completed by this host's search
            # domains into a name no list was asked about.
            if internal:
                raise Refused(f"{name} is an internal host: a session must list it")
            if not rules.private_allowed:
                raise Refused(
                    f"{name} is a single-label name, not a public one "
                    "(setting BROWSER_ALLOW_PRIVATE_NETWORKS)"
                )
        decision = self.policy.decision(name)
        if decision == "denied":
            raise Refused(f"{name} is denied (setting NETWORK_DENIED_DOMAINS)")
        if decision is None:
            if self.ask is None:
                raise Refused(f"{name} is not an allowed domain")
            if not await self.ask(name, port):
                raise Refused(f"{name} is not an allowed domain (the ask-callback said no)")
        if internal:
            if port not in self.policy.ports:  # even on a browser's public web
                raise Refused(f"port {port} is not allowed (setting NETWORK_ALLOWED_PORTS)")
            return self._checked(name, port, [internal], internal=True)
        return self._checked(name, port, await self._lookup(name, port), internal=False)

    def _checked(self, name: str, port: int, found: list[str], *, internal: bool) -> list[str]:
        """``found``, if every address may be reached; else Refused naming the first."""
        rules = self.rules
        for text in found:
            try:
                address = addresses.parse(text)
            except ValueError:
                raise Refused(f"{name} is not an address") from None
            kind = addresses.destination_kind(address)
            if port in rules.reserved_ports and addresses.is_this_host(address):
                raise Refused(f"{name} leads to the service itself ({address}:{port})")
            if internal or kind is addresses.Kind.PUBLIC:
                continue
            if rules.private_allowed and kind not in NEVER_INTERNAL:
                continue
            hint = (
                "setting BROWSER_ALLOW_PRIVATE_NETWORKS, or NETWORK_INTERNAL_HOSTS"
                if self.policy.every_name
                else "only NETWORK_INTERNAL_HOSTS may lead to one"
            )
            lead = f"{address} is" if text == name.strip("[]") else f"{name} resolves to {address},"
            raise Refused(f"{lead} {addresses.kind_text(address, kind)} ({hint})")
        return found

    async def _lookup(self, name: str, port: int) -> list[str]:
        try:
            # A dotted name is absolute (the trailing dot): no search domain of this host
            # (a pod's ndots:5) is tried first.  A single label stays as it is, for the
            # hosts file: what it finds is private, and refused, anyway.
            absolute = name + "." if "." in name else name
            infos = await resolver.shared().getaddrinfo(absolute, port, self.owner)
        except OSError as exc:  # not the policy's doing: a 502 to the client, no violation
            raise OSError(f"{name} does not resolve: {exc.strerror or exc}") from None
        return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _address_text(host: str) -> str:
    """An IP literal as it is connected to; a spelling that is not one stays as it is
    (and is refused by _checked)."""
    try:
        return str(addresses.parse(host.strip("[]")))
    except ValueError:
        return host.strip("[]")
