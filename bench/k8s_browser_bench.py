"""Benchmark: browser sessions on Kubernetes through the Ingress, beside local mode, same run.

Against `make k8s-up` (it runs it), with tests/pages.py served in the cluster:

- session create p50/p90 with the warm pool (browser.warmPods=1; the pool refills
  between two creations, not measured), and without it (browser.warmPods=0, set with
  helm upgrade, then put back): a pod and a Chromium start per session;
- navigate + content of an in-cluster page, p50/p90;
- the same in local mode on this machine (a service process of its own, a loopback
  page): the baseline of the ratios.

Figures, not assertions (the machines are shared and noisy).

    .venv/bin/python bench/k8s_browser_bench.py [--creates 10] [--cold 5] [--requests 40]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from kubernetes import client, config

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: the shared launchers are in tests/

from controller.kubernetes.session_pods import LABEL_POOL  # noqa: E402
from tests.e2e.release import (  # noqa: E402
    BROWSER_NAMESPACE,
    InClusterPages,
    Ingress,
    helm_set,
    install,
    wait_healthy,
)
from tests.pages import PageServer  # noqa: E402
from tests.support import ServiceProcess  # noqa: E402

STATE = Path("/var/lib/sandbox-controller-cluster")
B = "/browser/sessions"


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return f"p50 {statistics.median(ordered):8.1f} ms  p90 {p90:8.1f} ms  (n={len(ordered)})"


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return (time.perf_counter() - start) * 1000


def until(ready: Callable[[], bool], what: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise SystemExit(f"not {what} within {timeout_s:.0f}s")
        time.sleep(0.1)


def created(http: httpx.Client) -> str:
    response = http.post(B, json={})
    if response.status_code != 201:
        raise SystemExit(f"create: {response.status_code} {response.text[:300]}")
    return str(response.json()["sessionId"])


def creations(http: httpx.Client, count: int, warm: Callable[[], bool]) -> list[float]:
    samples = []
    for _ in range(count):
        until(warm, "warm")  # not measured: the pool refills between two creations
        start = time.perf_counter()
        sid = created(http)
        samples.append((time.perf_counter() - start) * 1000)
        http.delete(f"{B}/{sid}")
    return samples


def navigations(http: httpx.Client, url: str, count: int) -> list[float]:
    sid = created(http)
    try:

        def navigate_and_read() -> None:
            response = http.post(f"{B}/{sid}/navigate", json={"url": url})
            if response.status_code != 200:
                raise SystemExit(f"navigate: {response.status_code} {response.text[:300]}")
            if b"<title>Form</title>" not in http.get(f"{B}/{sid}/content").content:
                raise SystemExit("content did not come back")

        for _ in range(5):
            navigate_and_read()
        return [timed(navigate_and_read) for _ in range(count)]
    finally:
        http.delete(f"{B}/{sid}")


def helm_browser_warm_pods(count: int) -> None:
    helm_set(f"browser.warmPods={count}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--creates", type=int, default=10)
    parser.add_argument("--cold", type=int, default=5)
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()

    pages = PageServer()
    with ServiceProcess(
        browser_allow_private_networks="true", browser_warm_agents="1", max_browser_sessions="4"
    ) as local:
        http = local.client

        def local_warm() -> bool:
            return bool(http.get(B).json()["warmAgents"] >= 1)

        local_create = creations(http, args.creates, local_warm)
        until(local_warm, "warm")
        local_nav = navigations(http, pages.base + "/form", args.requests)
    pages.close()

    url, token = install()
    release = Ingress(url, token)
    wait_healthy(release)
    api = config.new_client_from_config(str(STATE / "kubeconfig/admin.kubeconfig"))
    core = client.CoreV1Api(api)
    in_cluster = InClusterPages(core)

    def k8s_warm() -> bool:
        pool = core.read_namespaced_config_map("browser-pool", BROWSER_NAMESPACE)
        return int((pool.data or {}).get("warmReady", "0")) >= 1

    try:
        with httpx.Client(
            base_url=url, timeout=180, headers={"Authorization": f"Bearer {token}"}
        ) as k8s:
            warm_create = creations(k8s, args.creates, k8s_warm)
            until(k8s_warm, "warm")
            k8s_nav = navigations(k8s, in_cluster.url("/form"), args.requests)
            helm_browser_warm_pods(0)
            try:
                wait_healthy(release)

                def no_warm_pod() -> bool:
                    warm = f"{LABEL_POOL}=warm"
                    pods = core.list_namespaced_pod(BROWSER_NAMESPACE, label_selector=warm)
                    return not pods.items

                until(no_warm_pod, "the warm pool emptied")
                cold_create = creations(k8s, args.cold, lambda: True)
            finally:
                helm_browser_warm_pods(1)
                wait_healthy(release)
    finally:
        in_cluster.remove()

    def ratio(mine: list[float], base: list[float]) -> str:
        return f"ratio to local {statistics.median(mine) / statistics.median(base):.2f}x"

    print(f"local      session create (warm)   {percentiles(local_create)}")
    print(
        f"kubernetes session create (warm)   {percentiles(warm_create)}  "
        f"{ratio(warm_create, local_create)}  (target p50 <= 200 ms)"
    )
    print(f"kubernetes session create (pool 0) {percentiles(cold_create)}  (target p50 <= 3000 ms)")
    print(f"local      navigate+content        {percentiles(local_nav)}")
    print(
        f"kubernetes navigate+content        {percentiles(k8s_nav)}  "
        f"{ratio(k8s_nav, local_nav)}  (target <= 1.5x)"
    )
    print(
        json.dumps(
            {
                "local_create_p50_ms": statistics.median(local_create),
                "warm_create_p50_ms": statistics.median(warm_create),
                "cold_create_p50_ms": statistics.median(cold_create),
                "local_navigate_p50_ms": statistics.median(local_nav),
                "k8s_navigate_p50_ms": statistics.median(k8s_nav),
            }
        )
    )


if __name__ == "__main__":
    main()
