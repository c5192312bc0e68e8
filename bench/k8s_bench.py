"""Benchmark: /execute in Kubernetes mode through the Ingress, beside local mode, same run.

Against `make k8s-up` (it runs it: build, cluster, chart; then the release as installed):

- local mode on this machine (a service process of its own): p50/p90, the baseline;
- Kubernetes, warm pool: p50/p90 through the Ingress, paced so that the pool refills
  between requests (the case the pool is for), and back to back;
- Kubernetes, cold path (runner.warmPods=0, set with helm upgrade, then put back): every
  request starts its own pod;
- sustained throughput with 8 clients through the Ingress, and beside it the pod start
  rate of the node: how many runner pods it started per second meanwhile, and, measured
  alone, how fast it starts bare pods from the runner image (what bounds a pod per
  execution).

Figures, not assertions (the machines are shared and noisy): ratios against the local
baseline of the same run.

    .venv/bin/python bench/k8s_bench.py [--requests 100] [--cold 10] [--clients 8] [--seconds 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from kubernetes import client, config

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: the shared launchers are in tests/

from tests.e2e.kube import RUNNER_IMAGE  # noqa: E402
from tests.e2e.release import Ingress, helm_set, install, wait_healthy  # noqa: E402
from tests.support import ServiceProcess  # noqa: E402

CODE = "print(2+2)"
STATE = Path("/var/lib/sandbox-controller-cluster")


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return f"p50 {statistics.median(ordered):8.2f} ms  p90 {p90:8.2f}"


def timed_execute(http: httpx.Client) -> float:
    start = time.perf_counter()
    response = http.post("/execute", json={"code": CODE})
    elapsed = (time.perf_counter() - start) * 1000
    if response.status_code != 200 or response.json()["stdout"] != "4\n":
        raise SystemExit(f"unexpected answer {response.status_code}: {response.text[:300]}")
    return elapsed


def series(http: httpx.Client, n: int, pause_s: float) -> list[float]:
    samples = []
    for _ in range(n):
        samples.append(timed_execute(http))
        time.sleep(pause_s)
    return samples


def client_for(base_url: str, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=base_url, timeout=120, headers={"Authorization": f"Bearer {token}"}
    )


def helm_warm_pods(count: int, release: Ingress) -> None:
    helm_set(f"runner.warmPods={count}")
    wait_healthy(release, warm=count, timeout_s=300)


def throughput(base_url: str, token: str, clients: int, seconds: float) -> tuple[int, int]:
    ok = errors = 0
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker() -> None:
        nonlocal ok, errors
        with client_for(base_url, token) as http:
            while time.monotonic() < deadline:
                response = http.post("/execute", json={"code": CODE})
                with lock:
                    if response.status_code == 200:
                        ok += 1
                    else:
                        errors += 1

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return ok, errors


def _started(pod: client.V1Pod) -> bool:
    """Its container has been running (it may have ended since)."""
    for status in pod.status.container_statuses or []:
        if status.state.running is not None or status.state.terminated is not None:
            return True
    return False


def bare_pod_start_rate(core: client.CoreV1Api, count: int) -> float:
    """Pods per second the node starts, alone: ``count`` bare pods from the runner image."""
    namespace = f"bench-{int(time.time())}"
    core.create_namespace({"metadata": {"name": namespace}})
    try:
        while not core.list_namespaced_service_account(namespace).items:
            time.sleep(0.2)
        spec = {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "main",
                    "image": RUNNER_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["/bin/sleep", "600"],
                    # Small requests: twenty of them must fit beside the release.
                    "resources": {
                        "requests": {"cpu": "10m", "memory": "16Mi"},
                        "limits": {"cpu": "100m", "memory": "64Mi"},
                    },
                }
            ],
        }
        start = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda i: core.create_namespaced_pod(
                        namespace, {"metadata": {"name": f"p{i}"}, "spec": spec}
                    ),
                    range(count),
                )
            )
        deadline = start + 300
        while time.monotonic() < deadline:
            pods = core.list_namespaced_pod(namespace).items
            if sum(1 for p in pods if _started(p)) == count:
                return count / (time.monotonic() - start)
            time.sleep(0.1)
        raise SystemExit(f"{count} bare pods did not all start within 300 s")
    finally:
        core.delete_namespace(namespace, grace_period_seconds=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument(
        "--pace",
        type=float,
        default=1.5,
        help="seconds between warm requests: slower than the node starts pods, so that a "
        "warm pod is there for each (what the pool is for)",
    )
    parser.add_argument("--cold", type=int, default=10)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()

    url, token = install()
    release = Ingress(url, token)
    wait_healthy(release, warm=4)
    core = client.CoreV1Api(
        config.new_client_from_config(str(STATE / "kubeconfig/admin.kubeconfig"))
    )

    with ServiceProcess() as local, client_for(local.base_url, local.token) as http:
        series(http, 10, 0.05)  # warm-up
        local_ms = series(http, args.requests, 0.05)
    local_p50 = statistics.median(local_ms)
    print(f"local mode        ({args.requests} paced)       {percentiles(local_ms)}")

    with client_for(url, token) as http:
        series(http, 5, args.pace)
        warm = series(http, args.requests, args.pace)
        print(
            f"kubernetes, warm  ({args.requests} paced {args.pace} s)  {percentiles(warm)}"
            f"  ratio to local p50 {statistics.median(warm) / local_p50:.1f}x"
            "  (target p50 <= 50 ms)"
        )
        wait_healthy(release, warm=4)
        back = series(http, 20, 0.0)
        print(
            f"kubernetes, warm  (20 back to back)     {percentiles(back)}  "
            "(each one consumes a pod; the pool refills at the node's pod start rate)"
        )

    wait_healthy(release, warm=4)
    ok, errors = throughput(url, token, args.clients, args.seconds)
    print(
        f"throughput, {args.clients} clients, {args.seconds:.0f} s: {ok / args.seconds:.1f} "
        f"executions/s ({ok} ok, {errors} errors), i.e. as many runner pods consumed and "
        "started per second"
    )
    wait_healthy(release, warm=4, timeout_s=300)
    print(f"the node alone: {bare_pod_start_rate(core, 20):.1f} bare pods/s (20 at once)")

    helm_warm_pods(0, release)
    try:
        with client_for(url, token) as http:
            cold = series(http, args.cold, 0.2)
        print(
            f"kubernetes, cold  ({args.cold}, pool of 0)          {percentiles(cold)}"
            f"  (target p50 <= 2000 ms)"
        )
    finally:
        helm_warm_pods(4, release)
    print(
        json.dumps(
            {
                "local_p50_ms": local_p50,
                "warm_p50_ms": statistics.median(warm),
                "cold_p50_ms": statistics.median(cold),
            }
        )
    )


if __name__ == "__main__":
    main()
