"""The keys file as data: what it accepts, where it is wrong, how it is read again."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from controller.errors import Overloaded
from controller.keys import Caller, Defaults, KeyRing, KeysFileError, RateLimits, parse_keys

DEFAULTS = Defaults(max_concurrent_executions=4, max_queued_executions=32, max_browser_sessions=4)
TOKEN = "the-deployments-own-token-32-chars!"


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


GOOD = f"""
keys:
  - name: team-a
    sha256: {sha("token-of-team-a-0123456789")}
    maxConcurrentExecutions: 2
    maxQueuedExecutions: 8
    maxBrowserSessions: 1
    requestsPerMinute: 600
  - name: team-b          # every limit from the deployment
    sha256: {sha("token-of-team-b-0123456789")}
"""


def test_each_key_has_its_limits_or_the_deployments() -> None:
    callers = parse_keys(GOOD, DEFAULTS)
    a = callers[sha("token-of-team-a-0123456789")]
    b = callers[sha("token-of-team-b-0123456789")]
    assert a == Caller("team-a", 2, 8, 1, 600)
    assert b == Caller("team-b", 4, 32, 4, None)
    assert parse_keys('{"keys": []}', DEFAULTS) == {}  # JSON is YAML too


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("keys: [", "line 1: not YAML"),
        ("- a\n- b\n", "line 1: the file must be a mapping"),
        ("users: []\n", "line 1: unknown field 'users'"),
        ("keys: {}\n", "line 1: `keys` must be a list"),
        (GOOD + "  - name: Team C\n    sha256: " + "a" * 64 + "\n", "line 11: name: String"),
        (GOOD + "  - name: team-c\n    sha256: ABC\n", "line 12: sha256: String"),
        (GOOD + "  - name: team-c\n    sha256: " + "b" * 64 + "\n    extra: 1\n", "line 13: extra"),
        (
            GOOD + "  - name: team-c\n    sha256: " + "c" * 64 + "\n    maxBrowserSessions: -1\n",
            "line 13: maxBrowserSessions",
        ),
        (
            GOOD + "  - name: team-c\n    sha256: " + "c" * 64 + "\n    requestsPerMinute: '5'\n",
            "line 13: requestsPerMinute",
        ),
        (
            GOOD + "  - name: team-a\n    sha256: " + "d" * 64 + "\n",
            "line 11: name: 'team-a' is taken",
        ),
        (GOOD + "  - name: default\n    sha256: " + "d" * 64 + "\n", "'default' is taken"),
        (
            GOOD + f"  - name: team-c\n    sha256: {sha('token-of-team-a-0123456789')}\n",
            "line 12: sha256: the same key as another entry",
        ),
    ],
)
def test_a_malformed_file_names_the_line(text: str, says: str) -> None:
    with pytest.raises(KeysFileError) as refused:
        parse_keys(text, DEFAULTS)
    assert says in str(refused.value), str(refused.value)


def test_the_token_and_the_files_keys_authenticate_and_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(GOOD)
    ring = KeyRing(TOKEN, DEFAULTS, path)
    assert ring.caller(TOKEN.encode()) == DEFAULTS.caller("default")
    team_a = ring.caller(b"token-of-team-a-0123456789")
    assert team_a is not None and team_a.name == "team-a"
    assert ring.caller(b"token-of-team-a-012345678") is None
    assert ring.caller(sha("token-of-team-a-0123456789").encode()) is None  # not the hash
    assert ring.names == ["team-a", "team-b"]


def test_a_changed_file_is_read_again_and_a_broken_one_ignored(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(GOOD)
    ring = KeyRing(TOKEN, DEFAULTS, path)
    assert not ring.reload()  # unchanged
    path.write_text(f"keys:\n  - name: team-c\n    sha256: {sha('token-of-team-c-0123456789')}\n")
    os.utime(path, ns=(1, 1))  # a new stamp even within the clock's resolution
    assert ring.reload()
    assert ring.caller(b"token-of-team-a-0123456789") is None  # revoked
    assert ring.caller(b"token-of-team-c-0123456789") is not None
    path.write_text("keys: [")  # a slip while editing
    assert not ring.reload()
    assert ring.caller(b"token-of-team-c-0123456789") is not None  # the keys before stay
    path.unlink()
    assert not ring.reload()
    assert ring.caller(TOKEN.encode()) is not None


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"keys:\n  - name: caf\xe9\n", "not UTF-8"),
        (b"keys:\n  - name: !!int xyz\n    sha256: x\n", "line 2: not a key entry"),
        (b"? [a]\n: 1\n", "unknown field"),
    ],
)
def test_any_broken_file_is_a_keys_file_error(tmp_path: Path, content: bytes, says: str) -> None:
    path = tmp_path / "keys.yaml"
    path.write_bytes(content)
    with pytest.raises(KeysFileError, match=says):
        KeyRing(TOKEN, DEFAULTS, path)
    path.write_text(GOOD)
    ring = KeyRing(TOKEN, DEFAULTS, path)
    path.write_bytes(content)
    os.utime(path, ns=(2, 2))
    assert not ring.reload()  # logged, and the keys before stay
    assert ring.caller(b"token-of-team-a-0123456789") is not None


def test_a_malformed_file_stops_the_start(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text("keys:\n  - name: x\n")
    with pytest.raises(KeysFileError, match="line 2: sha256: Field required"):
        KeyRing(TOKEN, DEFAULTS, path)


def test_requests_per_minute_is_a_bucket_per_key() -> None:
    rates = RateLimits()
    slow = Caller("slow", 1, 1, 1, requests_per_minute=3)
    for _ in range(3):
        rates.take(slow)
    with pytest.raises(Overloaded) as refused:
        rates.take(slow)
    assert refused.value.headers["Retry-After"] == "20"  # one request every 20 s
    assert "requestsPerMinute" in refused.value.message
    rates.take(Caller("other", 1, 1, 1, requests_per_minute=3))  # its own bucket
    rates.take(DEFAULTS.caller())  # no limit
