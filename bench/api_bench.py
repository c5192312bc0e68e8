"""Benchmark: what the service's request path costs, against a bare FastAPI app, in process.

The service's path is every middleware (request id and access line, metrics, admission
while stopping, bearer or key lookup with its rate limit, body cap), routing, the
dependencies, admission (fair queue) and the fake execution backend of the unit tier; the
baseline is a FastAPI app with one route that answers the same JSON.  Both are called
through httpx.ASGITransport, interleaved, in the same run: the ratio and the difference
per request are the figures (these machines are shared and noisy).

    .venv/bin/python bench/api_bench.py [--requests 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from fastapi import FastAPI

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: the in-process fakes are in tests/

from tests.inprocess import running_app  # noqa: E402

KEY = "a-benchmark-key-of-32-characters!"


def bare_app() -> FastAPI:
    app = FastAPI()

    @app.post("/execute")
    async def execute() -> dict[str, object]:
        return {"executionId": "ex-1", "exitCode": 0, "stdout": "4\n"}

    return app


async def timed(client: httpx.AsyncClient, path: str, body: dict[str, object]) -> float:
    started = time.perf_counter()
    response = await client.post(path, json=body)
    took = (time.perf_counter() - started) * 1000
    assert response.status_code == 200, response.text
    return took


async def main(requests: int) -> None:
    state = Path(tempfile.mkdtemp(prefix="api-bench-"))
    keys = state / "keys.yaml"
    keys.write_text(
        "keys:\n"
        + "".join(
            f"  - name: team-{i}\n    sha256: {hashlib.sha256(f'{KEY}{i}'.encode()).hexdigest()}\n"
            for i in range(50)
        )
    )
    body = {"code": "print(2+2)"}
    async with running_app(state, auth_keys_file=keys, access_log=False) as service:
        transport = httpx.ASGITransport(app=service.app)
        headers = {"Authorization": f"Bearer {KEY}7"}  # a named key: the hash lookup
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://s", headers=headers) as full,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=bare_app()), base_url="http://b"
            ) as bare,
        ):
            for _ in range(200):  # warm-up
                await timed(full, "/execute", body)
                await timed(bare, "/execute", body)
            service_ms, bare_ms = [], []
            for _ in range(requests):
                service_ms.append(await timed(full, "/execute", body))
                bare_ms.append(await timed(bare, "/execute", body))
    s50, b50 = statistics.median(service_ms), statistics.median(bare_ms)
    print(f"requests each:            {requests}")
    print(f"service /execute p50:     {s50:.3f} ms (fake sandbox)")
    print(f"bare FastAPI p50:         {b50:.3f} ms")
    print(f"ratio:                    {s50 / b50:.2f}x")
    print(f"the service's path costs: {s50 - b50:.3f} ms per request more at p50")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    asyncio.run(main(parser.parse_args().requests))
