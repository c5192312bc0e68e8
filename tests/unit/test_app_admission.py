"""Admission: a bounded number running, a bounded queue, then 429 (in process, fake backend)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.inprocess import FakeExecutionBackend, running_app
from tests.support import until


async def test_beyond_running_and_queued_is_429_with_retry_after(tmp_path: Path) -> None:
    gate = asyncio.Event()
    backend = FakeExecutionBackend(gate=gate)
    async with running_app(
        tmp_path, execution=backend, max_concurrent_executions=2, max_queued_executions=1
    ) as app:
        calls = [
            asyncio.create_task(app.client.post("/execute", json={"code": f"print({i})"}))
            for i in range(3)
        ]
        await until(lambda: backend.running == 2, what="two runs")
        health = (await app.client.get("/health")).json()
        assert health["executions"]["admitted"] == 3  # two running, one queued

        refused = await app.client.post("/execute", json={"code": "print(3)"})
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"] == "overloaded"
        assert "MAX_CONCURRENT_EXECUTIONS" in refused.json()["message"]
        assert backend.running == 2, "the queued one waits for a slot"

        gate.set()
        done = await asyncio.gather(*calls)
        assert [r.status_code for r in done] == [200, 200, 200]
        assert sorted(r.json()["stdout"] for r in done) == ["print(0)", "print(1)", "print(2)"]
        assert (await app.client.get("/health")).json()["executions"]["admitted"] == 0
        # Capacity is back: the next one runs.
        assert (await app.client.post("/execute", json={"code": "1"})).status_code == 200


async def test_a_caller_that_goes_away_gives_its_slot_back(tmp_path: Path) -> None:
    gate = asyncio.Event()
    backend = FakeExecutionBackend(gate=gate)
    async with running_app(
        tmp_path, execution=backend, max_concurrent_executions=1, max_queued_executions=0
    ) as app:
        first = asyncio.create_task(app.client.post("/execute", json={"code": "1"}))
        await until(lambda: backend.running == 1, what="one run")
        assert (await app.client.post("/execute", json={"code": "2"})).status_code == 429
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        await until(lambda: backend.running == 0, what="no run")
        gate.set()
        assert (await app.client.post("/execute", json={"code": "3"})).status_code == 200


async def test_jobs_carry_the_settings_limits_and_a_generated_id(tmp_path: Path) -> None:
    backend = FakeExecutionBackend()
    async with running_app(
        tmp_path, execution=backend, memory_limit_mb=256, default_timeout_ms=1234
    ) as app:
        await app.client.post("/execute", json={"code": "1"})
        await app.client.post("/execute", json={"code": "2", "timeoutMs": 99})
    first, second = backend.jobs
    assert first.limits.memory_bytes == 256 << 20
    assert (first.limits.timeout_ms, second.limits.timeout_ms) == (1234, 99)
    assert first.execution_id.startswith("ex-") and first.execution_id != second.execution_id
    assert first.harvest is not None and first.harvest.max_files == 50
