"""Request bodies as they arrive: deadline, the memory they hold, the large ones validated
in a parser process (in process, fake backends)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

from tests.inprocess import FakeExecutionBackend, running_app
from tests.support import until
from tests.unit.test_app_keys import A, B, as_key, keys_file

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
