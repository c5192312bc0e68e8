"""Request bodies as they arrive: deadline, the memory they hold, the large ones validated
in a parser process (in process, fake backends)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

from tests.inprocess import FakeExecutionBackend, running_app
from tests.support import until
from tests.unit.test_app_keys import A, B, as_key, keys_file, sha

KIB = 1024


def padded(size: int) -> bytes:
    """An /execute body of ``size`` bytes (its code a comment)."""
    head = b'{"code": "#'
    return head + b"x" * (size - len(head) - 2) + b'"}'


async def test_a_body_that_stops_arriving_is_408_and_the_connection_closes(
    tmp_path: Path,
) -> None:
    async def stalls() -> AsyncIterator[bytes]:
        yield b'{"code": "'
        await asyncio.Event().wait()

    async with running_app(tmp_path, request_body_timeout_s=0.2) as app:
        response = await app.client.post("/execute", content=stalls())
        assert response.status_code == 408, response.text
        assert response.json()["error"] == "request_timeout"
        assert "REQUEST_BODY_TIMEOUT_S" in response.json()["message"]
        assert response.headers["connection"] == "close"
        assert app.execution.jobs == []


async def test_one_caller_holds_at_most_half_of_the_bodies_in_flight(tmp_path: Path) -> None:
    backend = FakeExecutionBackend(gate=asyncio.Event())
    async with (
        running_app(
            tmp_path,
            execution=backend,
            auth_keys_file=keys_file(tmp_path),
            request_bodies_mb=1,  # 512 KiB a caller
            max_code_bytes=1024 * KIB,
        ) as app,
        as_key(app, A) as a,
        as_key(app, B) as b,
    ):
        held = asyncio.ensure_future(a.post("/execute", content=padded(400 * KIB)))
        await until(lambda: backend.running == 1, what="the first body's execution")
        refused = await a.post("/execute", content=padded(200 * KIB))
        assert refused.status_code == 429, refused.text
        assert "half of REQUEST_BODIES_MB" in refused.json()["message"]
        assert refused.headers["connection"] == "close"

        async def streamed() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
            body = padded(200 * KIB)
            for i in range(0, len(body), 50 * KIB):
                yield body[i : i + 50 * KIB]

        assert (await a.post("/execute", content=streamed())).status_code == 429
        other = asyncio.ensure_future(b.post("/execute", content=padded(400 * KIB)))
        await until(lambda: backend.running == 2, what="the other caller's execution")
        backend.gate.set()
        assert (await held).status_code == 200
        assert (await other).status_code == 200
        # Answered: what they held is free again.
        assert (await a.post("/execute", content=padded(400 * KIB))).status_code == 200


async def test_a_large_body_is_validated_outside_the_service(tmp_path: Path) -> None:
    async with running_app(tmp_path, max_input_files=2) as app:
        files = [{"path": f"f{i}", "content": "eA=="} for i in range(3)]
        large = {"code": "#" + "x" * 100 * KIB, "files": files}
        refused = await app.client.post("/execute", content=json.dumps(large))
        assert refused.status_code == 422
        assert refused.json()["details"] == [
            {
                "field": "files",
                "rule": "max_items",
                "message": "at most 2 files (setting MAX_INPUT_FILES)",
            }
        ]
        large["files"] = files[:2]
        ran = await app.client.post("/execute", content=json.dumps(large))
        assert ran.status_code == 200, ran.text
        assert [f.content for f in app.execution.jobs[0].files] == [b"x", b"x"]
        assert parsers() == 1  # a process of its own judged it, kept for the next one
        small = await app.client.post("/execute", json={"code": "1", "files": files})
        assert small.status_code == 422  # a small body is judged in the service, alike
        assert parsers() == 1


def parsers() -> int:
    """The body parser processes this process has started."""
    found = 0
    for entry in Path("/proc").iterdir():
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        found += ppid == os.getpid() and b"controller.bodies.worker" in command
    return found


async def test_large_bodies_leave_room_for_small_ones(tmp_path: Path) -> None:
    backend = FakeExecutionBackend(gate=asyncio.Event())
    async with (
        running_app(
            tmp_path,
            execution=backend,
            auth_keys_file=keys_file(tmp_path),
            request_bodies_mb=1,  # 512 KiB a caller, 896 KiB for large bodies
            max_code_bytes=1024 * KIB,
        ) as app,
        as_key(app, A) as a,
        as_key(app, B) as b,
    ):
        held = [
            asyncio.ensure_future(client.post("/execute", content=padded(440 * KIB)))
            for client in (a, b)
        ]
        await until(lambda: backend.running == 2, what="two large bodies' executions")
        refused = await b.post("/execute", content=padded(70 * KIB))  # within b's half
        assert refused.status_code == 429, refused.text
        assert "kept for bodies of at most 65536 bytes" in refused.json()["message"]
        small = asyncio.ensure_future(a.post("/execute", content=padded(60 * KIB)))
        await until(lambda: backend.running == 3, what="the small body's execution")
        backend.gate.set()
        assert [(await r).status_code for r in (*held, small)] == [200, 200, 200]


async def test_keys_that_trickle_large_bodies_hold_up_no_other_key(tmp_path: Path) -> None:
    tokens = [f"token-of-tenant-{n}-0123456789" for n in range(5)]
    keys = tmp_path / "keys.yaml"
    keys.write_text(
        "keys:\n" + "".join(f"  - name: t{n}\n    sha256: {sha(t)}\n" for n, t in enumerate(tokens))
    )
    coming = 0

    async def trickles() -> AsyncIterator[bytes]:
        nonlocal coming
        yield padded(100 * KIB)[: 80 * KIB]
        coming += 1
        await asyncio.Event().wait()

    async with (
        running_app(tmp_path, auth_keys_file=keys, max_code_bytes=1024 * KIB) as app,
        contextlib.AsyncExitStack() as clients,
    ):
        *tricklers, honest = [
            await clients.enter_async_context(as_key(app, token)) for token in tokens
        ]
        stalled = [
            asyncio.ensure_future(
                client.post(
                    "/execute",
                    content=trickles(),
                    headers={"Content-Length": str(100 * KIB)},
                )
            )
            for client in tricklers
        ]
        await until(lambda: coming == len(tricklers), what="every trickler's body begun")
        answer = await honest.post("/execute", content=padded(100 * KIB))
        assert answer.status_code == 200, answer.text
        for request in stalled:
            request.cancel()
