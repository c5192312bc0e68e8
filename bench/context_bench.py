"""Benchmark: a call on a live code context against a fresh /execute of the same code.

Interleaved in one run (one of each in turn, on kept-alive connections, each after the
warm pool is full again), so the ratio of their p50s means something on a shared
machine.  Also: context creation with the warm pool (WARM_SANDBOXES, the default) and
without it (a service with WARM_SANDBOXES=0: a sandbox started per creation), and the
memory an idle context holds: its interpreter's resident set, and what its whole cgroup
adds to the service's sandboxes (where the host gives each sandbox one).

    .venv/bin/python bench/context_bench.py [--requests 200]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: the shared service launcher is in tests/

from tests.integration.test_execution_cgroups import placement, subtree  # noqa: E402
from tests.support import ServiceProcess  # noqa: E402

VM_RSS = "import re\nprint(re.search(r'VmRSS:\\s+(\\d+)', open('/proc/self/status').read())[1])"
CODES = {"print(2+2)": "print(2+2)", "sum of a list": "print(sum(range(10000)))"}


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    return {"p50": statistics.median(ordered), "p90": ordered[int(0.9 * (len(ordered) - 1))]}


class Api:
    def __init__(self, service: ServiceProcess) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=60)
        self.headers = {"Authorization": f"Bearer {service.token}"}

    def call(self, method: str, path: str, body: Any = None) -> tuple[float, dict[str, Any]]:
        raw = json.dumps(body).encode() if body is not None else None
        start = time.perf_counter()
        self.conn.request(method, path, body=raw, headers=self.headers)
        response = self.conn.getresponse()
        data = response.read()
        elapsed = (time.perf_counter() - start) * 1000
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {data[:200]!r}")
        return elapsed, json.loads(data) if data else {}


def settled(api: Api, warm: int) -> None:
    """Wait until the warm pool is full again: a fresh /execute's replacement sandbox
    starts after its answer, and would otherwise be measured in the next request."""
    while api.call("GET", "/health")[1]["executions"]["warmSandboxes"] < warm:
        time.sleep(0.002)


def calls_against_execute(
    api: Api, code: str, n: int, warm: int
) -> tuple[list[float], list[float]]:
    _, created = api.call("POST", "/contexts", {})
    path = f"/contexts/{created['contextId']}/execute"
    context, fresh = [], []
    api.call("POST", path, {"code": code})  # the first call warms the interpreter's caches
    for _ in range(n):
        settled(api, warm)
        context.append(api.call("POST", path, {"code": code})[0])
        settled(api, warm)
        fresh.append(api.call("POST", "/execute", {"code": code})[0])
    api.call("DELETE", f"/contexts/{created['contextId']}")
    return context, fresh


def creations(api: Api, n: int, warm: int) -> list[float]:
    """Create (and then delete) contexts one at a time; the pool refills in between."""
    samples = []
    for _ in range(n):
        settled(api, warm)
        elapsed, created = api.call("POST", "/contexts", {})
        samples.append(elapsed)
        api.call("DELETE", f"/contexts/{created['contextId']}")
    return samples


def subtree_memory_bytes(state_dir: str) -> int | None:
    """What the service's sandboxes hold together (their cgroups' parent), if it has one."""
    for root in subtree(state_dir, "memory" if placement().version == 1 else ""):
        for name in ("memory.usage_in_bytes", "memory.current"):
            if (root / name).is_file():
                return int((root / name).read_text())
    return None


def context_memory_mb(api: Api, state_dir: str, warm: int, rounds: int = 5) -> float | None:
    """What one idle context adds to the sandboxes' memory (its keeper, interpreter and
    workspace, kernel memory included): the subtree's usage with the pool full, with and
    without the context, the median of ``rounds``."""
    deltas = []
    for _ in range(rounds):
        settled(api, warm)
        before = subtree_memory_bytes(state_dir)
        _, created = api.call("POST", "/contexts", {})
        api.call("POST", f"/contexts/{created['contextId']}/execute", {"code": "x = 1"})
        settled(api, warm)
        after = subtree_memory_bytes(state_dir)
        api.call("DELETE", f"/contexts/{created['contextId']}")
        if before is None or after is None:
            return None
        deltas.append(after - before)
    return statistics.median(deltas) / (1024 * 1024)


def idle_memory_kb(api: Api) -> tuple[str, float]:
    """What an idle context holds, after a call that imported nothing."""
    _, created = api.call("POST", "/contexts", {})
    path = f"/contexts/{created['contextId']}/execute"
    api.call("POST", path, {"code": "x = 1"})
    # The interpreter's resident set; the cgroup, where there is one, counts the keeper too.
    _, answer = api.call("POST", path, {"code": VM_RSS})
    api.call("DELETE", f"/contexts/{created['contextId']}")
    return "interpreter VmRSS", float(answer["stdout"])


def line(name: str, figures: dict[str, float]) -> str:
    return f"{name:<42} p50 {figures['p50']:7.2f} ms   p90 {figures['p90']:7.2f} ms"


def main() -> None:
    options = argparse.ArgumentParser()
    options.add_argument("--requests", type=int, default=200)
    options.add_argument("--creations", type=int, default=40)
    args = options.parse_args()
    with ServiceProcess(max_contexts="4") as service:
        api = Api(service)
        warm = int(api.call("GET", "/health")[1]["executions"]["warmSandboxes"])
        for name, code in CODES.items():
            context, fresh = calls_against_execute(api, code, args.requests, warm)
            c, f = percentiles(context), percentiles(fresh)
            print(line(f"context call: {name}", c))
            print(line(f"fresh /execute: {name}", f))
            print(f"{'':<42} ratio of p50s {c['p50'] / f['p50']:.2f} (target <= 0.5)")
        warm_create = percentiles(creations(api, args.creations, warm))
        print(line("create, warm pool", warm_create))
        what, kb = idle_memory_kb(api)
        print(f"{'idle context memory (' + what + ')':<42} {kb / 1024:.1f} MiB")
        whole = context_memory_mb(api, service.state_dir, warm)
        if whole is not None:
            print(f"{'idle context memory (its whole cgroup)':<42} {whole:.1f} MiB")
    with ServiceProcess(max_contexts="4", warm_sandboxes="0") as cold_service:
        cold = percentiles(creations(Api(cold_service), args.creations, 0))
        print(line("create, no warm pool (WARM_SANDBOXES=0)", cold))
        print(f"{'':<42} ratio of p50s {warm_create['p50'] / cold['p50']:.2f} (warm / cold)")


if __name__ == "__main__":
    main()
