"""AUTH_KEYS_FILE on the real service: refused at start with the line, read again without
a restart when it changes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest

from tests.support import ServiceProcess, refused_start, wait_for

pytestmark = pytest.mark.timeout(60)


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def test_a_malformed_file_stops_the_start_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(
        f"keys:\n  - name: team-a\n    sha256: {sha('x' * 20)}\n    maxBrowserSessions: many\n"
    )
    env = {**os.environ, "AUTH_TOKEN": "t" * 32, "AUTH_KEYS_FILE": str(path), "PORT": "1"}
    done = refused_start(env)
    assert done.returncode == 2
    assert "AUTH_KEYS_FILE: line 4: maxBrowserSessions" in done.stderr, done.stderr


def test_keys_are_read_again_without_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    first, second = "first-teams-token-0123456789", "second-teams-token-0123456789"
    path.write_text(f"keys:\n  - name: first\n    sha256: {sha(first)}\n")
    svc = ServiceProcess(auth_keys_file=str(path))
    try:

        def status(token: str) -> int:
            headers = {"Authorization": f"Bearer {token}"}
            return httpx.get(svc.base_url + "/browser/sessions", headers=headers).status_code

        assert (status(first), status(second)) == (200, 401)
        # Written whole and moved into place, as a Secret's volume or an editor does.
        staged = tmp_path / "keys.new"
        staged.write_text(f"keys:\n  - name: second\n    sha256: {sha(second)}\n")
        staged.replace(path)
        wait_for(lambda: status(second) == 200, what="the new key accepted")
        assert status(first) == 401  # revoked with the file
        path.write_text("keys: [")  # broken: the keys before stay
        wait_for(lambda: "read before stay" in svc.output(), what="the broken file logged")
        assert status(second) == 200
    finally:
        svc.stop()
