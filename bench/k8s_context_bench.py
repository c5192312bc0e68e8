"""Benchmark: code contexts on Kubernetes, through the Ingress, against /execute, same run.

Against the release of `make k8s-up` (it runs it):

- a call on a live context against an /execute of the same code (a warm runner pod per
  execution: the pod-per-execution path), interleaved one of each in turn, each pair
  once the runner pool is warm again (a pod start beside either would be timed too),
  so the ratio of their p50s means something on a shared machine;
- a context's creation with a warm context pod (the operator's pool: a claim, the
  resource's Ready, the pod's setup), each after the pool is full again, and without
  one (contexts.warmPods=0 for the run: a pod started per creation).

    .venv/bin/python bench/k8s_context_bench.py [--requests 40] [--creations 6]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import httpx
from kubernetes import client, config

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: the shared launchers are in tests/

from tests.e2e.release import KUBECONFIG, Ingress, helm_set, install, wait_healthy  # noqa: E402

CODE = "print(2+2)"


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


def timed(http: httpx.Client, path: str, body: dict[str, object], status: int = 200) -> float:
    start = time.perf_counter()
    response = http.post(path, json=body)
    elapsed = (time.perf_counter() - start) * 1000
    if response.status_code != status:
        raise SystemExit(f"{path}: {response.status_code} {response.text[:300]}")
    return elapsed


def warm_contexts(release: Ingress) -> None:
    """Until the operator's pool has a warm context pod again (it says on its ConfigMap)."""
    from kubernetes import client, config

    config.load_kube_config(
        str(Path("/var/lib/sandbox-controller-cluster/kubeconfig/admin.kubeconfig"))
    )
    core = client.CoreV1Api()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        pool = core.read_namespaced_config_map("context-pool", "sandbox-runners")
        if int((pool.data or {}).get("warmReady", "0")) >= 1:
            return
        time.sleep(0.2)
    raise SystemExit("no warm context pod within 120 s")


def creations(core: client.CoreV1Api | None, http: httpx.Client, count: int) -> list[float]:
    """``count`` creations (each after the pool is full again, with ``core``)."""
    samples = []
    for _ in range(count):
        if core is not None:
            warm_contexts(core)
        start = time.perf_counter()
        created = http.post("/contexts", json={})
        elapsed = (time.perf_counter() - start) * 1000
        if created.status_code != 201:
            raise SystemExit(f"/contexts: {created.status_code} {created.text[:300]}")
        http.delete(f"/contexts/{created.json()['contextId']}")
        samples.append(elapsed)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--creations", type=int, default=6)
    args = parser.parse_args()
    url, token = install()
    release = Ingress(url, token)
    wait_healthy(release, warm=1)
    http = httpx.Client(base_url=url, timeout=120, headers={"Authorization": f"Bearer {token}"})
    created = http.post("/contexts", json={})
    context = created.json()["contextId"]
    call = f"/contexts/{context}/execute"
    executes: list[float] = []
    calls: list[float] = []
    try:
        for _ in range(3):  # warm-up: connections, the interpreter's first call
            timed(http, call, {"code": CODE})
        for _ in range(args.requests):
            # Both on a quiet node: the call first (it starts nothing), then the execution
            # (its pod is replaced afterwards, which the next wait lets finish).
            wait_healthy(release, warm=1)
            calls.append(timed(http, call, {"code": CODE}))
            executes.append(timed(http, "/execute", {"code": CODE}))
    finally:
        http.delete(f"/contexts/{context}")
    e50, e90 = percentiles(executes)
    c50, c90 = percentiles(calls)
    print(f"/execute (a warm pod each)     p50 {e50:8.1f} ms  p90 {e90:8.1f}")
    print(f"context call                   p50 {c50:8.1f} ms  p90 {c90:8.1f}  ({c50 / e50:.2f}x)")
    config.load_kube_config(str(KUBECONFIG))
    warm = creations(client.CoreV1Api(), http, args.creations)
    w50, w90 = percentiles(warm)
    print(f"context creation, warm pod     p50 {w50:8.1f} ms  p90 {w90:8.1f}")
    helm_set("contexts.warmPods=0")
    try:
        wait_healthy(release)  # helm waited for the operator's rollout (Recreate)
        cold = creations(None, http, max(args.creations // 2, 2))
    finally:
        helm_set("contexts.warmPods=1")
        wait_healthy(release)
    k50, k90 = percentiles(cold)
    print(
        f"context creation, cold pod     p50 {k50:8.1f} ms  p90 {k90:8.1f}  ({k50 / w50:.1f}x warm)"
    )


if __name__ == "__main__":
    main()
