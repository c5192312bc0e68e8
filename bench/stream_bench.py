"""Benchmark: streamed runs and the rich-results machinery, each against a baseline of
the same run.

1. Time to the first byte of output of a streamed run against the whole answer of the
   same run without streaming (interleaved, one of each in turn): for ``print(2+2)``,
   and for a program that prints and then works for a second (where streaming matters).
2. The cost of the rich-results machinery on ``print(2+2)``: this tree's service against
   the service of a baseline commit (default: the one before the machinery came,
   ``--baseline REV``), checked out in a temporary worktree and run beside it, requests
   interleaved, each after the warm pools are full again.  The target: p50 within 10 %.

    .venv/bin/python bench/stream_bench.py [--requests 200] [--baseline REV]
    .venv/bin/python bench/stream_bench.py --url http://10.244.0.1 --token-file FILE
        (1. only, against a running service: the Kubernetes installation's Ingress, say)
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: the shared service launcher is in tests/

from tests.support import ServiceProcess  # noqa: E402

DEFAULT_BASELINE = "6740de7"
"""The last commit before streaming and rich results (issue 28)."""
SLOW = "import time\nprint('started', flush=True)\ntime.sleep(1)\nprint('done')"


def p50(samples_ms: list[float]) -> float:
    return statistics.median(samples_ms)


class Api:
    def __init__(self, url: str, token: str, warm: int = 2) -> None:
        parsed = urlsplit(url)
        self.conn = http.client.HTTPConnection(parsed.hostname or "", parsed.port, timeout=60)
        self.headers = {"Authorization": f"Bearer {token}"}
        self.answered: dict[str, Any] = {}
        self.warm = warm

    @classmethod
    def of(cls, service: ServiceProcess) -> Api:
        return cls(service.base_url, service.token)

    def whole(self, code: str) -> float:
        """Milliseconds to the whole answer of a run without streaming."""
        start = time.perf_counter()
        self.conn.request("POST", "/execute", json.dumps({"code": code}), self.headers)
        response = self.conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"{response.status}: {body[:200]!r}")
        self.answered = json.loads(body)
        return (time.perf_counter() - start) * 1000

    def first_output(self, code: str) -> float:
        """Milliseconds to the first output event of a streamed run (read to its end)."""
        start = time.perf_counter()
        headers = {**self.headers, "Accept": "text/event-stream"}
        self.conn.request("POST", "/execute", json.dumps({"code": code}), headers)
        response = self.conn.getresponse()
        first = None
        while line := response.readline():
            if first is None and line.startswith(b"event: stdout"):
                first = (time.perf_counter() - start) * 1000
        if response.status != 200 or first is None:
            raise RuntimeError(f"{response.status}: no output streamed")
        return first

    def settled(self) -> None:
        """Until the warm pool is full again (a run's replacement starts after it)."""
        while True:
            self.conn.request("GET", "/health", headers=self.headers)
            health: dict[str, Any] = json.loads(self.conn.getresponse().read())
            executions = health["executions"]
            if executions["warmSandboxes"] >= self.warm and not executions["admitted"]:
                return
            time.sleep(0.002)


def streaming(api: Api, n: int) -> None:
    for label, code in (("print(2+2)", "print(2+2)"), ("print, then 1 s of work", SLOW)):
        runs = n if code != SLOW else max(5, n // 20)
        first, whole = [], []
        for _ in range(runs):
            api.settled()
            first.append(api.first_output(code))
            api.settled()
            whole.append(api.whole(code))
        print(
            f"{label}: first output streamed p50 {p50(first):.1f} ms, whole answer p50 "
            f"{p50(whole):.1f} ms: {p50(first) / p50(whole):.3f}x ({runs} each)"
        )


def baseline_service(revision: str, directory: Path) -> ServiceProcess:
    """The service of ``revision``, from a worktree: its packages ahead of this tree's."""
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(directory), revision],
        check=True,
        capture_output=True,
    )
    paths = [directory / p for p in ("runner-image", "browser-image", "client", ".")]
    os.environ["PYTHONPATH"] = os.pathsep.join(str(p) for p in paths)
    try:  # started in the worktree: ``-m controller`` finds its package first
        service = ServiceProcess(prefix=("env", "-C", str(directory)), warm_pool_size="2")
    finally:
        del os.environ["PYTHONPATH"]
    return service


def machinery(n: int, revision: str) -> None:
    with tempfile.TemporaryDirectory(prefix="stream-bench-") as scratch:
        worktree = Path(scratch) / "baseline"
        old = baseline_service(revision, worktree)
        new = ServiceProcess(warm_pool_size="2")
        try:
            before, after = Api.of(old), Api.of(new)
            for api in (before, after):  # warm both: the first runs fill caches
                for _ in range(5):
                    api.whole("print(2+2)")
            # The baseline is the code before the machinery: its answer has no results.
            assert "results" not in before.answered and "results" in after.answered
            samples: dict[str, list[float]] = {"baseline": [], "this tree": []}
            for _ in range(n):
                for label, api in (("baseline", before), ("this tree", after)):
                    api.settled()
                    samples[label].append(api.whole("print(2+2)"))
            ratio = p50(samples["this tree"]) / p50(samples["baseline"])
            print(
                f"print(2+2) without streaming: this tree p50 {p50(samples['this tree']):.1f} "
                f"ms, baseline {revision} p50 {p50(samples['baseline']):.1f} ms: {ratio:.2f}x "
                f"({n} each; target within 1.10x)"
            )
        finally:
            old.stop()
            new.stop()
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)],
                check=False,
                capture_output=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--baseline", default=DEFAULT_BASELINE)
    parser.add_argument("--url", help="a running service instead (streaming only)")
    parser.add_argument("--token-file", type=Path)
    parser.add_argument("--warm", type=int, default=1, help="its warm sandboxes or pods")
    args = parser.parse_args()
    if args.url:
        token = args.token_file.read_text().strip() if args.token_file else ""
        streaming(Api(args.url, token, args.warm), args.requests)
        return
    service = ServiceProcess(warm_pool_size="2")
    try:
        streaming(Api.of(service), args.requests)
    finally:
        service.stop()
    machinery(args.requests, args.baseline)


if __name__ == "__main__":
    main()
