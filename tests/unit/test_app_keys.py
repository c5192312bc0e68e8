"""Tenants through the whole app: keys, their limits, fair queueing, their own sessions
(in process, fake backends)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from tests.inprocess import FakeExecutionBackend, InProcess, running_app
from tests.support import until

A, B, C = (f"token-of-team-{n}-0123456789" for n in "abc")


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def keys_file(tmp_path: Path, **limits: object) -> Path:
    path = tmp_path / "keys.yaml"
    extra = "".join(f"    {k}: {v}\n" for k, v in limits.items())
    path.write_text(
        "keys:\n"
        f"  - name: team-a\n    sha256: {sha(A)}\n{extra}"
        f"  - name: team-b\n    sha256: {sha(B)}\n{extra}"
    )
    return path


@asynccontextmanager
async def as_key(app: InProcess, token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with app.other_client({"Authorization": f"Bearer {token}"}) as client:
        yield client


async def test_each_key_is_its_own_caller(tmp_path: Path) -> None:
    async with (
        running_app(tmp_path, auth_keys_file=keys_file(tmp_path)) as app,
        as_key(app, A) as a,
        as_key(app, B) as b,
        as_key(app, C) as c,
    ):
        assert (await a.post("/execute", json={"code": "1"})).status_code == 200
        assert (await b.post("/execute", json={"code": "2"})).status_code == 200
        assert (await c.post("/execute", json={"code": "3"})).status_code == 401
        assert (await app.client.post("/execute", json={"code": "4"})).status_code == 200
        # The metrics name every key: the operator's to read, not a tenant's.
        refused = await a.get("/metrics")
        assert refused.status_code == 403 and "team-a" in refused.json()["message"]
        metrics = (await app.client.get("/metrics")).text
    for name in ("team-a", "team-b", "default"):
        assert f'sandbox_executions_total{{key="{name}",outcome="exited"}} 1.0' in metrics
    assert A not in metrics and sha(A) not in metrics


async def test_a_keys_own_limits_refuse_it_alone(tmp_path: Path) -> None:
    gate = asyncio.Event()
    backend = FakeExecutionBackend(gate=gate)
    path = keys_file(tmp_path, maxConcurrentExecutions=1, maxQueuedExecutions=1)
    async with (
        running_app(tmp_path, execution=backend, auth_keys_file=path) as app,
        as_key(app, A) as a,
        as_key(app, B) as b,
    ):
        admission = app.app.state.execution.admission
        held = [asyncio.create_task(a.post("/execute", json={"code": f"{i}"})) for i in (1, 2)]
        await until(lambda: admission.admitted == 2, what="team-a's two admitted")
        third = await a.post("/execute", json={"code": "3"})
        assert third.status_code == 429 and third.headers["retry-after"] == "1"
        assert "key 'team-a'" in third.json()["message"]
        # Another key is not held back by team-a's limit.
        other = asyncio.create_task(b.post("/execute", json={"code": "b"}))
        await until(lambda: admission.admitted == 3, what="team-b's admitted")
        gate.set()
        assert [r.status_code for r in await asyncio.gather(*held, other)] == [200] * 3


async def test_the_queue_is_fair_between_keys(tmp_path: Path) -> None:
    """One slot: team-a queues eight executions, then team-b two; team-b's do not wait
    for all of team-a's but go in turn."""
    gate = asyncio.Event()
    backend = FakeExecutionBackend(gate=gate)
    async with (
        running_app(
            tmp_path,
            execution=backend,
            auth_keys_file=keys_file(tmp_path),
            max_concurrent_executions=1,
            max_queued_executions=20,
        ) as app,
        as_key(app, A) as a,
        as_key(app, B) as b,
    ):
        admission = app.app.state.execution.admission
        calls = []
        for n, (client, code) in enumerate(
            [(a, f"a{i}") for i in range(8)] + [(b, "b0"), (b, "b1")]
        ):
            calls.append(asyncio.create_task(client.post("/execute", json={"code": code})))
            await until(lambda n=n: admission.admitted == n + 1, what=f"{code} admitted")
        for started in range(1, 11):  # let one execution end at a time
            await until(
                lambda started=started: len(backend.jobs) == started and backend.running == 1,
                what=f"execution {started} running",
            )
            gate.set()  # wakes the one running now; the next one waits for the next set
            gate.clear()
        await asyncio.gather(*calls)
    order = [job.code for job in backend.jobs]
    assert sorted(order) == sorted([f"a{i}" for i in range(8)] + ["b0", "b1"])
    # a0 was running; then the turn alternates while both wait: b0 and b1 come within
    # the first five, not after all eight of team-a's.
    assert order.index("b0") <= 2 and order.index("b1") <= 4, order


async def test_requests_per_minute(tmp_path: Path) -> None:
    path = keys_file(tmp_path, requestsPerMinute=2)
    async with running_app(tmp_path, auth_keys_file=path) as app, as_key(app, A) as a:
        statuses = [(await a.get("/browser/sessions")).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        refused = await a.get("/browser/sessions")
        assert int(refused.headers["retry-after"]) >= 1
        assert "requestsPerMinute" in refused.json()["message"]
        async with as_key(app, B) as b:
            assert (await b.get("/browser/sessions")).status_code == 200  # its own bucket


async def test_sessions_belong_to_their_key(tmp_path: Path) -> None:
    path = keys_file(tmp_path, maxBrowserSessions=1)
    async with (
        running_app(tmp_path, auth_keys_file=path, max_browser_sessions=4) as app,
        as_key(app, A) as a,
        as_key(app, B) as b,
    ):
        created = await a.post("/browser/sessions", json={})
        assert created.status_code == 201
        sid = created.json()["sessionId"]
        second = await a.post("/browser/sessions", json={})
        assert second.status_code == 429 and "maxBrowserSessions" in second.json()["message"]
        # team-b neither sees nor reaches nor closes team-a's session.
        listed = (await b.get("/browser/sessions")).json()
        assert listed["sessions"] == [] and listed["maxSessions"] == 1
        for method, path in [
            ("GET", f"/browser/sessions/{sid}"),
            ("GET", f"/browser/sessions/{sid}/tabs"),
            ("POST", f"/browser/sessions/{sid}/tabs"),
            ("DELETE", f"/browser/sessions/{sid}"),
        ]:
            response = await b.request(method, path)
            assert response.status_code == 404, (method, path, response.text)
        assert [s["sessionId"] for s in (await a.get("/browser/sessions")).json()["sessions"]] == [
            sid
        ]
        assert (await b.post("/browser/sessions", json={})).status_code == 201  # its own cap
        assert (await a.delete(f"/browser/sessions/{sid}")).status_code == 204


async def test_concurrent_creates_hold_a_key_to_its_session_cap(tmp_path: Path) -> None:
    path = keys_file(tmp_path, maxBrowserSessions=1)
    async with (
        running_app(tmp_path, auth_keys_file=path, max_browser_sessions=8) as app,
        as_key(app, A) as a,
    ):
        answers = await asyncio.gather(*(a.post("/browser/sessions", json={}) for _ in range(5)))
    assert sorted(r.status_code for r in answers) == [201, 429, 429, 429, 429]


async def test_a_key_holds_at_most_its_share_of_the_requests_in_flight(tmp_path: Path) -> None:
    backend = FakeExecutionBackend(gate=asyncio.Event())
    async with (
        running_app(
            tmp_path, execution=backend, auth_keys_file=keys_file(tmp_path), max_requests_per_key=2
        ) as app,
        as_key(app, A) as a,
        as_key(app, B) as b,
    ):
        held = [asyncio.ensure_future(a.post("/execute", json={"code": "1"})) for _ in range(2)]
        await until(lambda: backend.running == 2, what="the key's two executions")
        refused = await a.post("/execute", json={"code": "1"})
        assert refused.status_code == 429, refused.text
        assert "MAX_REQUESTS_PER_KEY" in refused.json()["message"]
        assert refused.headers["connection"] == "close"
        other = asyncio.ensure_future(b.post("/execute", json={"code": "1"}))
        await until(lambda: backend.running == 3, what="the other key's execution")
        backend.gate.set()
        assert [(await r).status_code for r in (*held, other)] == [200, 200, 200]
        # Answered: the key's share is free again.
        assert (await a.post("/execute", json={"code": "1"})).status_code == 200
