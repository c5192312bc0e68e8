"""Callers and their keys: AUTH_TOKEN's caller, and the named keys of AUTH_KEYS_FILE.

The file holds each key as the SHA-256 of the bearer token its caller sends, never the
token, with the caller's own limits (each one omitted falls back to the deployment's
setting).  It is read at start, where a malformed file stops the service with the line
that is wrong, and again whenever it changes: a file that has become malformed is then
logged and ignored, and the keys read before stay in force, so a slip while editing
locks nobody out and lets nobody in.
"""

from __future__ import annotations

import hmac
import logging
import math
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from controller.errors import Overloaded
from sandbox_common import bearer

log = logging.getLogger(__name__)

DEFAULT_KEY = "default"
"""The name of AUTH_TOKEN's caller."""
KeyName = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9_.]{0,61}[a-z0-9])?$")]
"""A key's name goes into labels, logs and metrics: a Kubernetes label value's rules."""


class KeyEntry(BaseModel):
    """One key of the file."""

    model_config = ConfigDict(strict=True, extra="forbid")

    name: KeyName
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="hex SHA-256 of the token")
    maxConcurrentExecutions: int | None = Field(None, ge=1, le=256)
    maxQueuedExecutions: int | None = Field(None, ge=0, le=10_000)
    maxBrowserSessions: int | None = Field(None, ge=0, le=1000)
    maxContexts: int | None = Field(None, ge=0, le=1000)
    requestsPerMinute: int | None = Field(None, ge=1, le=1_000_000)


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: its key's name (never the key) and its limits."""

    name: str
    max_concurrent_executions: int
    max_queued_executions: int
    max_browser_sessions: int
    requests_per_minute: int | None = None
    max_contexts: int = 0


@dataclass(frozen=True)
class Defaults:
    """The deployment's limits, for what a key leaves out (and for AUTH_TOKEN)."""

    max_concurrent_executions: int
    max_queued_executions: int
    max_browser_sessions: int
    max_contexts: int = 0

    def caller(self, name: str = DEFAULT_KEY, entry: KeyEntry | None = None) -> Caller:
        # AUTH_TOKEN's caller has no limits of its own.
        own = entry or KeyEntry.model_validate({"name": name, "sha256": "0" * 64})

        def pick(value: int | None, default: int) -> int:
            return default if value is None else value

        return Caller(
            name=name,
            max_concurrent_executions=pick(
                own.maxConcurrentExecutions, self.max_concurrent_executions
            ),
            max_queued_executions=pick(own.maxQueuedExecutions, self.max_queued_executions),
            max_browser_sessions=pick(own.maxBrowserSessions, self.max_browser_sessions),
            max_contexts=pick(own.maxContexts, self.max_contexts),
            requests_per_minute=own.requestsPerMinute,
        )


class KeysFileError(ValueError):
    """A keys file that cannot be used; the message names the line."""


def parse_keys(text: str, defaults: Defaults) -> dict[str, Caller]:
    """The file's callers by the SHA-256 of their token; KeysFileError names the line."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise KeysFileError(f"{where}not YAML: {getattr(exc, 'problem', exc)}") from None
    callers: dict[str, Caller] = {}
    names: set[str] = set()
    for node in _entries(root):
        try:
            raw = yaml.safe_load(yaml.serialize(node))
        except (yaml.YAMLError, ValueError, TypeError) as exc:  # a tag that does not construct
            raise KeysFileError(f"line {_line(node, '')}: not a key entry: {exc}") from None
        try:
            entry = KeyEntry.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "entry"
            line = _line(node, str(first["loc"][0]) if first["loc"] else "")
            raise KeysFileError(f"line {line}: {field}: {first['msg']}") from None
        if entry.name in names or entry.name == DEFAULT_KEY:
            raise KeysFileError(f"line {_line(node, 'name')}: name: {entry.name!r} is taken")
        if entry.sha256 in callers:
            raise KeysFileError(
                f"line {_line(node, 'sha256')}: sha256: the same key as another entry"
            )
        names.add(entry.name)
        callers[entry.sha256] = defaults.caller(entry.name, entry)
    return callers


def read_keys(path: Path, defaults: Defaults) -> dict[str, Caller]:
    """The file's callers; KeysFileError for text that is not UTF-8, or as parse_keys."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise KeysFileError(f"not UTF-8 text (byte {exc.start})") from None
    return parse_keys(text, defaults)


def _entries(root: yaml.Node | None) -> list[yaml.Node]:
    """The nodes of the entries under ``keys``; KeysFileError when the shape is not
    ``keys: [mapping, ...]``."""
    if not isinstance(root, yaml.MappingNode):
        raise KeysFileError("line 1: the file must be a mapping with a `keys` list")
    for key_node, value in root.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.value != "keys":
            line = key_node.start_mark.line + 1
            raise KeysFileError(f"line {line}: unknown field {key_node.value!r}")
        if not isinstance(value, yaml.SequenceNode):
            raise KeysFileError(f"line {value.start_mark.line + 1}: `keys` must be a list")
        return list(value.value)
    raise KeysFileError("line 1: no `keys` list")


def _line(entry: yaml.Node, field: str) -> int:
    """The line of ``field`` in an entry, else of the entry (1-based)."""
    if isinstance(entry, yaml.MappingNode):
        for key_node, _ in entry.value:
            if key_node.value == field:
                return int(key_node.start_mark.line) + 1
    return int(entry.start_mark.line) + 1


class KeyRing:
    """AUTH_TOKEN's caller and the file's, as they stand; ``reload`` rereads a changed file."""

    def __init__(self, token: str, defaults: Defaults, path: Path | None) -> None:
        self._token_digest = bearer.digest(token)
        self.defaults = defaults
        self.path = path
        self._callers: dict[str, Caller] = {}
        self._seen: tuple[int, int, int] | None = None
        if path is not None:
            self._callers = read_keys(path, defaults)  # at start: fail loudly
            self._seen = _stamp(path)

    @property
    def names(self) -> list[str]:
        return sorted(c.name for c in self._callers.values())

    def caller(self, token: bytes) -> Caller | None:
        """The caller whose token this is (sandbox_common.bearer.credentials), or None."""
        digest = bearer.digest(token)
        if hmac.compare_digest(digest, self._token_digest):
            return self.defaults.caller()
        # A lookup by the token's hash: what it could leak by timing is about hashes,
        # which a caller cannot choose.
        return self._callers.get(digest.hex())

    def reload(self) -> bool:
        """Reread the file if it changed; whether the keys changed."""
        if self.path is None:
            return False
        try:
            stamp = _stamp(self.path)
        except OSError as exc:
            log.error(
                "AUTH_KEYS_FILE %s cannot be read (%s): the keys read before stay", self.path, exc
            )
            return False
        if stamp == self._seen:
            return False
        self._seen = stamp
        try:
            callers = read_keys(self.path, self.defaults)
        except (OSError, KeysFileError) as exc:
            log.error("AUTH_KEYS_FILE %s: %s: the keys read before stay", self.path, exc)
            return False
        self._callers = callers
        log.info("AUTH_KEYS_FILE %s read again: %d keys", self.path, len(callers))
        return True


def _stamp(path: Path) -> tuple[int, int, int]:
    """What changes when the file does (a Secret's volume swaps a symlink: stat follows)."""
    found = os.stat(path)
    return (found.st_ino, found.st_mtime_ns, found.st_size)


class RateLimits:
    """requestsPerMinute per key: a bucket of that many requests, refilled evenly."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, at)

    def take(self, caller: Caller) -> None:
        """One request of ``caller``'s; Overloaded (429, Retry-After) past its rate."""
        rate = caller.requests_per_minute
        if rate is None:
            return
        now = time.monotonic()
        tokens, at = self._buckets.get(caller.name, (float(rate), now))
        tokens = min(float(rate), tokens + (now - at) * rate / 60)
        if tokens < 1:
            self._buckets[caller.name] = (tokens, now)
            wait = math.ceil((1 - tokens) * 60 / rate)
            raise Overloaded(
                f"key {caller.name!r} is limited to {rate} requests a minute "
                "(requestsPerMinute in AUTH_KEYS_FILE)",
                retry_after_s=max(wait, 1),
            )
        self._buckets[caller.name] = (tokens - 1, now)


class InFlight:
    """Requests of each key in flight at once, from their head until their answer is sent:
    at most ``most`` per key, so that no key can hold every connection the server keeps
    (MAX_CONNECTIONS) with requests that trickle their bodies or never read their answers."""

    def __init__(self, most: int) -> None:
        self.most = most
        self._by: Counter[str] = Counter()

    def enter(self, caller: Caller) -> None:
        """One more request of ``caller``'s; Overloaded (429, Retry-After) past ``most``."""
        if self._by[caller.name] >= self.most:
            raise Overloaded(
                f"key {caller.name!r} has {self.most} requests in flight already "
                "(setting MAX_REQUESTS_PER_KEY); retry when one is answered",
                retry_after_s=1,
            )
        self._by[caller.name] += 1

    def leave(self, caller: Caller) -> None:
        self._by[caller.name] -= 1
        if not self._by[caller.name]:
            del self._by[caller.name]
