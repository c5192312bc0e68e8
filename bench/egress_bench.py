"""Benchmark: what the egress proxy costs, against baselines measured in the same run.

1. An execution that may reach a name (its own egress socket opened and closed, the
   forwarder bound) against one that may not, on the same service, interleaved one of
   each in turn: the added p50.
2. An HTTP request through the proxy from inside a sandbox (loopback server, name from
   NETWORK_INTERNAL_HOSTS) against the same request made directly from this process:
   the added time per request.

Figures, not assertions: the machines are shared and noisy.

    .venv/bin/python bench/egress_bench.py [--executions 200] [--requests 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: the shared service launcher is in tests/

from tests.origin import start_origin  # noqa: E402
from tests.support import ServiceProcess  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--executions", type=int, default=200)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    server = start_origin()
    port = server.server_address[1]
    with ServiceProcess(
        network_allowed_domains="files.test",
        network_internal_hosts="files.test=127.0.0.1",
        network_allowed_ports=str(port),
        network_max_connections=str(args.requests + 10),
    ) as svc:
        bodies = {
            "with an allowlist": {"code": "print(2+2)"},
            "without": {"code": "print(2+2)", "network": {"allowedDomains": []}},
        }
        samples: dict[str, list[float]] = {name: [] for name in bodies}
        for _ in range(10):
            for body in bodies.values():
                svc.client.post("/execute", json=body)
        for _ in range(args.executions):
            for name, body in bodies.items():
                started = time.perf_counter()
                response = svc.client.post("/execute", json=body)
                samples[name].append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200 and response.json()["stdout"] == "4\n"
        with_p50 = statistics.median(samples["with an allowlist"])
        without_p50 = statistics.median(samples["without"])
        print(
            f"execution p50: {with_p50:.2f} ms with an allowlist, {without_p50:.2f} ms "
            f"without: +{with_p50 - without_p50:.2f} ms (target <= 2 ms), "
            f"{with_p50 / without_p50:.2f}x"
        )

        url = f"http://files.test:{port}/"
        code = (
            "import time, urllib.request\n"
            f"urllib.request.urlopen({url!r}).read()\n"
            "started = time.perf_counter()\n"
            f"for _ in range({args.requests}):\n"
            f"    urllib.request.urlopen({url!r}).read()\n"
            f"print((time.perf_counter() - started) * 1000 / {args.requests})\n"
        )
        result = svc.execute(code, timeoutMs=60_000)
        assert result["exitCode"] == 0, result["stderr"]
        proxied_ms = float(result["stdout"])
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    direct.open(f"http://127.0.0.1:{port}/").read()
    started = time.perf_counter()
    for _ in range(args.requests):
        direct.open(f"http://127.0.0.1:{port}/").read()
    direct_ms = (time.perf_counter() - started) * 1000 / args.requests
    server.shutdown()
    print(
        f"HTTP request: {proxied_ms:.2f} ms through the proxy from a sandbox, {direct_ms:.2f} ms "
        f"directly: +{proxied_ms - direct_ms:.2f} ms per request, {proxied_ms / direct_ms:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
