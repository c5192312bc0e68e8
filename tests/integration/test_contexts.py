"""Code contexts on the real local service: tenancy, caps, expiry, limits, isolation, cleanup.

The contract (tests/contract/contexts.py) covers what a context does for its caller;
these are the rules around it, each tried by a caller that would break it.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.origin import start_origin
from tests.support import ServiceProcess, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

MARKER_SECONDS = "4242.5"
"""A sleep no other test starts: its processes are found on the host by their cmdline."""


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Key:
    def __init__(self, svc: ServiceProcess, token: str) -> None:
        self.client = httpx.Client(
            base_url=svc.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def create(self, **body: Any) -> str:
        response = self.client.post("/contexts", json=body)
        assert response.status_code == 201, response.text
        context_id: str = response.json()["contextId"]
        return context_id

    def run(self, context_id: str, code: str, **fields: Any) -> dict[str, Any]:
        response = self.client.post(
            f"/contexts/{context_id}/execute", json={"code": code, **fields}
        )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceProcess, Key, Key]]:
    """A service with two keys; the second may hold one context at a time."""
    first, second = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    path = tmp_path_factory.mktemp("keys") / "keys.yaml"
    path.write_text(
        f"keys:\n  - name: first\n    sha256: {sha(first)}\n"
        f"  - name: second\n    sha256: {sha(second)}\n    maxContexts: 1\n"
    )
    with ServiceProcess(auth_keys_file=str(path), memory_limit_mb="256") as svc:
        keys = Key(svc, first), Key(svc, second)
        try:
            yield svc, *keys
        finally:
            for key in keys:
                key.client.close()


def marked_processes() -> list[int]:
    """Host pids of the processes the tests' contexts started (by their marker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if MARKER_SECONDS.encode() in cmdline:
                found.append(int(entry.name))
    return found


def test_another_keys_context_does_not_exist_for_it(keyed: tuple[ServiceProcess, Key, Key]) -> None:
    _, first, second = keyed
    context_id = first.create()
    try:
        first.run(context_id, "secret = 'first'")
        for method, path, body in (
            ("GET", "", None),
            ("POST", "/execute", {"code": "print(secret)"}),
            ("GET", "/files", None),
            ("GET", "/files/x", None),
            ("PUT", "/files/x", None),
            ("POST", "/restart", None),
            ("DELETE", "", None),
        ):
            response = second.client.request(method, f"/contexts/{context_id}{path}", json=body)
            assert response.status_code == 404, (method, path, response.text)
        assert second.client.get("/contexts").json()["contexts"] == []
        assert first.run(context_id, "print(secret)")["stdout"] == "first\n"
    finally:
        first.client.delete(f"/contexts/{context_id}")


def test_a_keys_cap_counts_its_open_contexts(keyed: tuple[ServiceProcess, Key, Key]) -> None:
    _, first, second = keyed
    held = second.create()
    try:
        refused = second.client.post("/contexts", json={})
        assert refused.status_code == 429
        assert "maxContexts" in refused.json()["message"]
        assert second.client.get("/contexts").json()["maxContexts"] == 1
        other = first.create()  # another key's room is its own
        first.client.delete(f"/contexts/{other}")
    finally:
        assert second.client.delete(f"/contexts/{held}").status_code == 204
    second.client.delete(f"/contexts/{second.create()}")  # room again


def test_an_idle_context_expires(keyed: tuple[ServiceProcess, Key, Key]) -> None:
    _, first, _ = keyed
    context_id = first.create(idleTimeoutS=1)
    first.run(context_id, "x = 1")
    wait_for(
        lambda: first.client.get(f"/contexts/{context_id}").status_code == 404,
        what="the idle context closed",
    )


def test_the_memory_limit_holds_across_calls(keyed: tuple[ServiceProcess, Key, Key]) -> None:
    """256 MiB for the whole context: what one call keeps counts against the next."""
    _, first, _ = keyed
    context_id = first.create()
    try:
        kept = first.run(context_id, "held = bytearray(160 * 1024 * 1024)")
        assert kept["exitCode"] == 0, kept
        over = first.run(context_id, "more = bytearray(160 * 1024 * 1024)")
        assert over["exitCode"] != 0
        memory = [v for v in over["violations"] if v["target"] in ("memory", "MemoryError")]
        assert memory or "MemoryError" in over["stderr"], over
        # The context lives on: a fresh interpreter if the kernel killed it, else the same.
        assert first.run(context_id, "print('alive')")["stdout"] == "alive\n"
    finally:
        first.client.delete(f"/contexts/{context_id}")


def test_two_contexts_share_no_files_processes_or_loopback(
    keyed: tuple[ServiceProcess, Key, Key],
) -> None:
    _, first, _ = keyed
    a, b = first.create(), first.create()
    try:
        started = first.run(
            a,
            "import socket, subprocess\n"
            "open('mine.txt', 'w').write('a')\n"
            "server = socket.socket(); server.bind(('127.0.0.1', 5555)); server.listen()\n"
            f"sleeper = subprocess.Popen(['sleep', '{MARKER_SECONDS}'])\n",
        )
        assert started["exitCode"] == 0, started
        seen = first.run(
            b,
            "import os, socket\n"
            "print(os.path.exists('mine.txt'))\n"
            "print(sorted(open(f'/proc/{p}/cmdline').read() for p in os.listdir('/proc') "
            "if p.isdigit() and 'sleep' in open(f'/proc/{p}/cmdline').read()))\n"
            "try:\n    socket.create_connection(('127.0.0.1', 5555), timeout=1)\n"
            "    print('reached')\nexcept OSError as exc:\n    print(type(exc).__name__)\n",
        )
        assert seen["stdout"] == "False\n[]\nConnectionRefusedError\n", seen
        # In its own context, the listener and the process are there, between calls.
        mine = first.run(a, "print(sleeper.poll(), server.getsockname()[1])")
        assert mine["stdout"] == "None 5555\n"
    finally:
        first.client.delete(f"/contexts/{a}")
        first.client.delete(f"/contexts/{b}")


def test_nothing_is_left_after_delete_or_stop(tmp_path: Path) -> None:
    svc = ServiceProcess()
    try:
        created = svc.client.post("/contexts", json={}).json()["contextId"]
        svc.client.post(
            f"/contexts/{created}/execute",
            json={"code": f"import subprocess; subprocess.Popen(['sleep', '{MARKER_SECONDS}'])"},
        )
        assert len(marked_processes()) == 1
        assert svc.client.delete(f"/contexts/{created}").status_code == 204
        wait_for(lambda: marked_processes() == [], what="the deleted context's processes gone")
        kept = svc.client.post("/contexts", json={}).json()["contextId"]
        svc.client.post(
            f"/contexts/{kept}/execute",
            json={"code": f"import subprocess; subprocess.Popen(['sleep', '{MARKER_SECONDS}'])"},
        )
        assert len(marked_processes()) == 1
    finally:
        svc.stop()
    wait_for(lambda: marked_processes() == [], what="the stopped service's contexts gone")
    assert not os.path.exists(svc.state_dir)


def test_a_contexts_network_is_narrowed_and_refusals_are_per_call() -> None:
    origin = start_origin()
    port = origin.server_address[1]
    try:
        with ServiceProcess(
            network_allowed_domains="files.test, other.test",
            network_allowed_ports=str(port),
            network_internal_hosts="files.test=127.0.0.1,other.test=127.0.0.1",
        ) as svc:
            created = svc.client.post(
                "/contexts", json={"network": {"allowedDomains": ["files.test"]}}
            )
            assert created.status_code == 201, created.text
            context_id = created.json()["contextId"]
            assert created.json()["allowedDomains"] == ["files.test"]

            def run(code: str) -> dict[str, Any]:
                response = svc.client.post(f"/contexts/{context_id}/execute", json={"code": code})
                assert response.status_code == 200, response.text
                result: dict[str, Any] = response.json()
                return result

            fetched = run(
                "import urllib.request\n"
                f"print(urllib.request.urlopen('http://files.test:{port}/').read().decode())"
            )
            assert fetched["stdout"] == f"hello files.test:{port}\n", fetched
            assert fetched["usage"]["network"]["connections"] == 1
            refused = run(
                "import urllib.request\ntry:\n"
                f"    urllib.request.urlopen('http://other.test:{port}/')\n"
                "except OSError as exc:\n    print('refused')"
            )
            assert refused["stdout"] == "refused\n"
            assert [v["target"] for v in refused["violations"] if v["kind"] == "network"] == [
                f"other.test:{port}"
            ]
            assert run("print(1)")["violations"] == []
    finally:
        origin.shutdown()
        origin.server_close()
