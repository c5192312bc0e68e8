"""Network by name: domain patterns, the deployment's ceiling, and a request's narrowing of it.

A pattern is an exact name (``api.github.com``) or a wildcard for the names under one
(``*.github.com``: ``a.github.com`` and ``a.b.github.com``, not ``github.com`` itself;
list both for both).  Names are compared in their ASCII (IDNA) form, lower-case,
without a trailing dot.  An IP address is never a pattern: the policy is about names,
and the proxy resolves them itself (sandbox_common.addresses judges what they lead to).

The same rules serve the execution's egress proxy and the browser agent's, in every
placement: what a name *is allowed* to be is decided here, once.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

from sandbox_common import addresses

# Underscores too: DNS carries them and browsers reach such hosts (``my_app.example``).
_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
_HEX = frozenset("0123456789abcdef")
MAX_NAME_CHARS = 253
MAX_PATTERNS = 1024
"""Entries in one list of a policy (allowed, denied, internal hosts): what a session's
agent and its BrowserSession accept, so a deployment's settings are held to it too."""
# The four characters IDNA2003 (Python's ``idna`` codec) maps where UTS 46, as browsers
# apply it, keeps them (``faß.de`` is ``fass.de`` to one and ``xn--fa-hia.de`` to the
# other): a name with one would be checked as someone else's domain.  Punycode says
# which is meant.
IDNA_DEVIATIONS = frozenset("\u00df\u03c2\u200c\u200d")
# Suffixes under which anyone can register a name: a wildcard right above one of them
# allows the whole world's names.  The one-label ones (``*.com``) are refused by rule;
# these are the common two-label registries (a full public-suffix list is not worth a
# dependency: this guards against a slip, the ceiling itself is the operator's choice).
PUBLIC_SUFFIXES = frozenset(
    f"{second}.{top}"
    for top, seconds in {
        "uk": ("co", "org", "ac", "gov", "me", "net", "ltd", "plc"),
        "au": ("com", "net", "org", "edu", "gov", "id"),
        "nz": ("co", "org", "net", "ac", "govt"),
        "jp": ("co", "ne", "or", "ac", "go"),
        "br": ("com", "net", "org", "gov"),
        "cn": ("com", "net", "org", "gov", "edu"),
        "in": ("co", "net", "org", "gov", "ac"),
        "za": ("co", "org", "net", "gov", "ac"),
        "mx": ("com", "org", "gob"),
        "tr": ("com", "org", "net", "gov"),
        "sg": ("com", "org", "net", "gov", "edu"),
        "hk": ("com", "org", "net", "gov", "edu"),
        "kr": ("co", "or", "ne", "go", "ac"),
        "tw": ("com", "org", "net", "gov", "edu"),
        "ar": ("com", "org", "net", "gob"),
        "il": ("co", "org", "net", "ac", "gov"),
    }.items()
    for second in seconds
)


NEVER_INTERNAL = frozenset(
    {addresses.Kind.METADATA, addresses.Kind.MULTICAST, addresses.Kind.UNSPECIFIED}
)


class PatternError(ValueError):
    """A pattern or name that the policy refuses; ``rule`` names the rule it broke."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.index: int | None = None
        """Which entry of a list broke it (DomainPolicy.narrowed)."""


def normalize_name(raw: str) -> str:
    """``raw`` as compared: IDNA ASCII, lower-case, no trailing dot; PatternError if no name.

    What is an address is decided on the final form (IDNA drops and maps characters: a
    soft hyphen in ``8.8.8.8\xad`` is not there any more), and in every spelling the
    resolver takes for one (``134744072``, ``0x7f.1``, ``1.2.3.04``): a name whose last
    label is a number is never a name.
    """
    text = raw.strip()
    if not text:
        raise PatternError("empty", "a domain name cannot be empty")
    if not IDNA_DEVIATIONS.isdisjoint(text):
        raise PatternError(
            "ambiguous_name",
            f"{raw!r} has a character IDNA versions map differently (ß, ς, ZWJ, ZWNJ): "
            "write the name in punycode (xn--)",
        )
    try:
        ascii_name = text.encode("idna").decode("ascii") if not text.isascii() else text
    except UnicodeError:
        ascii_name = text if _is_ip_literal(text) else ""
        if not ascii_name:
            raise PatternError("invalid_name", f"{raw!r} is not a valid domain name") from None
    ascii_name = ascii_name.rstrip(".").lower()
    if _is_ip_literal(ascii_name):
        raise PatternError(
            "ip_literal", f"{raw!r} is an IP address: the network policy allows names only"
        )
    labels = ascii_name.split(".")
    if len(ascii_name) > MAX_NAME_CHARS or not all(_LABEL.fullmatch(label) for label in labels):
        raise PatternError("invalid_name", f"{raw!r} is not a valid domain name")
    return ascii_name


def _is_ip_literal(text: str) -> bool:
    """An address in any spelling: IPv6 (bracketed, zoned), dotted IPv4, and the forms
    the resolver reads as IPv4 (one number, hexadecimal or octal parts)."""
    try:
        ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        pass
    else:
        return True
    last = text.rstrip(".").rsplit(".", 1)[-1]
    if last.isdigit() or (last.startswith("0x") and all(c in _HEX for c in last[2:])):
        return True
    try:
        socket.inet_aton(text)
    except (OSError, ValueError):
        return False
    return True


@dataclass(frozen=True, order=True)
class Pattern:
    """An exact name, or (``wildcard``) every name under ``name``."""

    name: str
    wildcard: bool = False

    @classmethod
    def parse(cls, raw: str) -> Pattern:
        text = raw.strip()
        if text in ("*", "*."):
            raise PatternError("too_broad", f"{raw!r} allows every name")
        if text.startswith("*."):
            base = normalize_name(text[2:])
            if "." not in base or base in PUBLIC_SUFFIXES:
                raise PatternError("too_broad", f"{raw!r} allows every name under a public suffix")
            return cls(base, wildcard=True)
        if "*" in text:
            raise PatternError("invalid_wildcard", f"{raw!r}: a wildcard is only '*.' in front")
        return cls(normalize_name(text))

    def matches(self, name: str) -> bool:
        """Whether the normalized ``name`` is one this pattern names."""
        return name.endswith("." + self.name) if self.wildcard else name == self.name

    def covers(self, other: Pattern) -> bool:
        """Whether every name ``other`` matches is one this pattern matches too."""
        if not self.wildcard:
            return not other.wildcard and other.name == self.name
        return other.name.endswith("." + self.name) or (other.wildcard and other.name == self.name)

    def __str__(self) -> str:
        return f"*.{self.name}" if self.wildcard else self.name


def parse_patterns(raw: Iterable[str]) -> tuple[Pattern, ...]:
    """Distinct patterns in a stable order; PatternError names the first bad one, or
    says there are more than MAX_PATTERNS."""
    patterns = tuple(sorted({Pattern.parse(item) for item in raw if item.strip()}))
    if len(patterns) > MAX_PATTERNS:
        raise PatternError("too_many", f"{len(patterns)} names, at most {MAX_PATTERNS}")
    return patterns


@dataclass(frozen=True)
class DomainPolicy:
    """What names one execution (or session) may reach, and on which ports."""

    allowed: tuple[Pattern, ...] = ()
    denied: tuple[Pattern, ...] = ()
    ports: frozenset[int] = field(default_factory=lambda: frozenset({80, 443}))
    ask_unlisted: bool = False
    """A name neither list names is decided by the operator's ask-callback (the ceiling
    only: a request that lists its names has said which it needs)."""
    every_name: bool = False
    """The public web: every name the denied list does not name, and IP addresses, on
    any port (a browser session in a deployment that allows no domain).  ``ports`` is
    then what a narrowing of it gets."""

    @property
    def allows_anything(self) -> bool:
        return self.every_name or ((bool(self.allowed) or self.ask_unlisted) and bool(self.ports))

    def decision(self, name: str) -> str | None:
        """``allowed``, ``denied`` (deny wins), or None: a name neither list names."""
        if any(p.matches(name) for p in self.denied):
            return "denied"
        if self.every_name or any(p.matches(name) for p in self.allowed):
            return "allowed"
        return None

    def allows_port(self, port: int) -> bool:
        return self.every_name or port in self.ports

    def narrowed(self, requested: Iterable[str]) -> DomainPolicy:
        """This ceiling with only ``requested`` allowed; PatternError (rule
        ``outside_ceiling``, ``denied``, or the pattern's own) names the first entry the
        ceiling does not allow, and its ``index``."""
        chosen = []
        for index, raw in enumerate(requested):
            try:
                chosen.append(self._within(Pattern.parse(raw)))
            except PatternError as exc:
                exc.index = index
                raise
        return DomainPolicy(tuple(sorted(set(chosen))), self.denied, self.ports, ask_unlisted=False)

    def _within(self, pattern: Pattern) -> Pattern:
        if any(d.covers(pattern) for d in self.denied):
            raise PatternError("denied", f"{pattern} is denied by the deployment's policy")
        if not self.every_name and not any(a.covers(pattern) for a in self.allowed):
            raise PatternError(
                "outside_ceiling", f"{pattern} is not within the deployment's allowed domains"
            )
        return pattern


def parse_internal_hosts(value: str) -> dict[str, str]:
    """``"pypi.internal=10.0.0.5, git.internal=::1"`` -> {name: address}.

    ValueError names the bad pair: no ``=``, or what internal_host refuses; or says
    there are more than MAX_PATTERNS.
    """
    found: dict[str, str] = {}
    for raw in value.split(","):
        item = raw.strip()
        if not item:
            continue
        name, sep, address_text = item.partition("=")
        if not sep:
            raise ValueError(f"{item!r} is not name=address")
        try:
            name, address = internal_host(name, address_text)
        except ValueError as exc:
            raise ValueError(f"{item!r}: {exc}") from None
        found[name] = address
    if len(found) > MAX_PATTERNS:
        raise ValueError(f"{len(found)} internal hosts, at most {MAX_PATTERNS}")
    return found


def internal_host(name: str, address_text: str) -> tuple[str, str]:
    """One internal host, normalized; ValueError for a bad name, an address that is not
    one, or one that is never a destination (metadata, multicast, unspecified)."""
    name = normalize_name(name)
    address = addresses.parse(address_text.strip().strip("[]"))
    if addresses.classify(address) in NEVER_INTERNAL:
        raise ValueError(f"{address} is never a destination")
    return name, str(address)


def parse_ports(value: str) -> frozenset[int]:
    """``"80, 443"`` -> {80, 443}; ValueError names an entry that is not a port."""
    ports = set()
    for item in (i.strip() for i in value.split(",")):
        if not item:
            continue
        if not item.isdigit() or not 0 < int(item) < 65536:
            raise ValueError(f"{item!r} is not a port (1-65535)")
        ports.add(int(item))
    return frozenset(ports)
