"""Soak: thousands of mixed executions against one local service, then its resources.

Runs, against a service of its own on loopback (tests/support.ServiceProcess):

1. a warm-up (one after another, then from every client at once), then a snapshot of
   the service's resources: open descriptors, threads, child processes, the mounts it
   sees, its sandbox cgroups, its temporary directories and its resident memory;
2. ``--sequential`` executions one after another and ``--concurrent`` more from
   ``--clients`` clients, cycling through mixed code (prints, timeouts, crashes, big
   output, files, memory bombs, fork bombs, stdin); every response must be a 200 with a
   well-formed body that says what the code did (no lost or malformed response, no
   5xx), else the run fails;
3. the same snapshot after the pool has settled, printed beside the first; a leak fails
   the run;
4. noisy neighbours: ``print(2+2)`` p50 alone, then while two clients keep memory and
   fork bombs running, probed back to back and paced (one every 100 ms, as requests
   arrive); the ratios are printed (target <= 2x).  ``--idle-after-ms 0`` runs it without
   the idle CPU class (CPU_IDLE_AFTER_MS), for the comparison.

Exit status 0 when every check held.  Figures, not timing assertions: the ratio is
printed for the note.

    .venv/bin/python bench/soak.py [--sequential 10000] [--concurrent 1000] [--clients 8]
        [--probes 100] [--idle-after-ms N]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: the shared launcher is in tests/
sys.path.insert(0, str(ROOT / "runner-image"))

from runner.cgroup import host_placement  # noqa: E402

from controller.cgroups import subtree_name  # noqa: E402
from tests.support import ServiceProcess, parent_pid  # noqa: E402

MEMORY_MB = 256
Check = Callable[[dict[str, Any]], bool]


def targets(result: dict[str, Any]) -> set[str]:
    return {v["target"] for v in result["violations"]}


MIX: list[tuple[str, dict[str, Any], Check]] = [
    ("print", {"code": "print(2+2)"}, lambda r: r["stdout"] == "4\n" and r["exitCode"] == 0),
    (
        "timeout",
        {"code": "import time; time.sleep(5)", "timeoutMs": 200},
        lambda r: r["timedOut"] is True and "timeoutMs" in targets(r),
    ),
    ("crash", {"code": "raise SystemExit(3)"}, lambda r: r["exitCode"] == 3),
    (
        "abort",
        {"code": "import os; os.abort()"},
        lambda r: r["signal"] == 6 and r["exitCode"] is None,
    ),
    (
        "big output",
        {"code": "import sys; sys.stdout.write('x' * 3_000_000)"},
        lambda r: r["truncated"]["stdout"] is True and "stdout" in targets(r),
    ),
    (
        "files",
        {"code": "open('out.txt', 'w').write('done')", "files": []},
        lambda r: [f["name"] for f in r["files"]] == ["out.txt"],
    ),
    (
        "memory bomb",
        {
            "code": (
                "import os\n"
                "for _ in range(4):\n"
                "    if os.fork() == 0:\n"
                "        held = []\n"
                "        try:\n"
                "            while True: held.append(bytearray(8 << 20))\n"
                "        except MemoryError:\n"
                "            os._exit(0)\n"
                "for _ in range(4):\n"
                "    os.wait()\n"
            ),
            "timeoutMs": 10000,
        },
        lambda r: "memory" in targets(r),
    ),
    (
        "fork bomb",
        {
            "code": (
                "import os, time\n"
                "try:\n"
                "    while True:\n"
                "        if os.fork() == 0:\n"
                "            time.sleep(10); os._exit(0)\n"
                "except BlockingIOError:\n"
                "    print('refused')\n"
            ),
            "timeoutMs": 10000,
        },
        lambda r: r["stdout"] == "refused\n" and "processes" in targets(r),
    ),
    (
        "stdin",
        {"code": "import sys; print(sys.stdin.read()[::-1])", "stdin": "abc"},
        lambda r: r["stdout"] == "cba\n",
    ),
]
REQUIRED = {"executionId", "exitCode", "stdout", "stderr", "violations", "usage", "files"}


class Failures:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[str] = []

    def add(self, text: str) -> None:
        with self.lock:
            if len(self.items) < 20:
                self.items.append(text)
            else:
                self.items[-1] = f"... and more (last: {text})"


def one(client: httpx.Client, kind: int, failures: Failures) -> None:
    name, body, ok = MIX[kind % len(MIX)]
    try:
        response = client.post("/execute", json=body)
    except httpx.HTTPError as exc:
        failures.add(f"{name}: transport error {exc!r}")
        return
    if response.status_code != 200:
        failures.add(f"{name}: {response.status_code} {response.text[:200]}")
        return
    try:
        result = response.json()
        missing = REQUIRED - set(result)
        if missing:
            failures.add(f"{name}: malformed, missing {sorted(missing)}")
        elif not ok(result):
            failures.add(f"{name}: unexpected {str(result)[:300]}")
    except ValueError:
        failures.add(f"{name}: not JSON: {response.text[:200]}")


def snapshot(svc: ServiceProcess) -> dict[str, int]:
    pid = svc.proc.pid
    proc = Path(f"/proc/{pid}")
    children = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(p) == pid]
    where = host_placement()
    groups = 0
    if not isinstance(where, str):
        for parent in where.parents.values():
            root = parent / subtree_name(svc.env["STATE_DIR"])
            if root.is_dir():
                groups = max(groups, sum(1 for p in root.iterdir() if p.is_dir()))
    state = Path(svc.env["STATE_DIR"])
    status = dict(
        line.split(":", 1) for line in (proc / "status").read_text().splitlines() if ":" in line
    )
    return {
        "open fds": len(os.listdir(proc / "fd")),
        "threads": int(status["Threads"]),
        "child processes": len(children),
        "mounts": len((proc / "mountinfo").read_text().splitlines()),
        "sandbox cgroups": groups,
        "state dir entries": sum(1 for _ in state.rglob("*")),
        "tmp entries": len(os.listdir("/tmp")),
        "resident kB": int(status["VmRSS"].split()[0]),
    }


def _ppid(proc: Path) -> int:
    try:
        return parent_pid(proc.name)
    except (OSError, IndexError, ValueError):
        return -1


def settle(svc: ServiceProcess, warm: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        health = svc.client.get("/health").json()
        if health["executions"]["warmSandboxes"] >= warm and not health["executions"]["admitted"]:
            time.sleep(1.0)  # the last sandboxes' cgroups and directories go after a reply
            return
        time.sleep(0.2)


def concurrently(svc: ServiceProcess, count: int, clients: int, failures: Failures) -> None:
    """``count`` executions of the mix from ``clients`` clients at once."""
    counter = itertools.count()
    lock = threading.Lock()

    def worker() -> None:
        with httpx.Client(
            base_url=svc.base_url, timeout=120, headers={"Authorization": f"Bearer {svc.token}"}
        ) as own:
            while True:
                with lock:
                    kind = next(counter)
                if kind >= count:
                    return
                one(own, kind, failures)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


PACE_S = 0.1


class Probes(NamedTuple):
    """``print(2+2)``'s p50 in ms, sent back to back and paced (``PACE_S`` apart)."""

    back_to_back: float
    paced: float


def p50_print(client: httpx.Client, n: int) -> Probes:
    p50s = []
    for pause in (0.0, PACE_S):
        samples = []
        for _ in range(n):
            start = time.perf_counter()
            response = client.post("/execute", json={"code": "print(2+2)"})
            samples.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200 and response.json()["stdout"] == "4\n"
            time.sleep(pause)
        p50s.append(statistics.median(samples))
    return Probes(*p50s)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sequential", type=int, default=10_000)
    parser.add_argument("--concurrent", type=int, default=1_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--probes", type=int, default=100)
    parser.add_argument(
        "--idle-after-ms", type=int, help="CPU_IDLE_AFTER_MS (default: the service's)"
    )
    args = parser.parse_args()
    warm = 4
    failures = Failures()
    with ServiceProcess(
        memory_limit_mb=str(MEMORY_MB),
        max_processes="32",
        max_concurrent_executions="4",
        max_queued_executions=str(4 * args.clients),
        warm_sandboxes=str(warm),
        output_limit_bytes=str(1 << 20),
        access_log="false",
        **({} if args.idle_after_ms is None else {"cpu_idle_after_ms": str(args.idle_after_ms)}),
    ) as svc:
        client = httpx.Client(
            base_url=svc.base_url, timeout=60, headers={"Authorization": f"Bearer {svc.token}"}
        )
        # Warm-up, one after another and from every client at once: the service's pools
        # (threads, connections) reach the size the soak will use before the snapshot.
        for kind in range(3 * len(MIX)):
            one(client, kind, failures)
        concurrently(svc, args.clients * len(MIX), args.clients, failures)
        settle(svc, warm)
        before = snapshot(svc)
        started = time.monotonic()
        for kind in range(args.sequential):
            one(client, kind, failures)
        sequential_s = time.monotonic() - started
        started = time.monotonic()
        concurrently(svc, args.concurrent, args.clients, failures)
        concurrent_s = time.monotonic() - started
        settle(svc, warm)
        after = snapshot(svc)

        quiet = p50_print(client, args.probes)
        stop = threading.Event()

        def bomber(kind: int) -> None:
            with httpx.Client(
                base_url=svc.base_url, timeout=120, headers={"Authorization": f"Bearer {svc.token}"}
            ) as own:
                while not stop.is_set():
                    own.post("/execute", json=MIX[kind][1])

        bombers = [
            threading.Thread(target=bomber, args=(i,))
            for i, (name, _, _) in enumerate(MIX)
            if name in ("memory bomb", "fork bomb")
        ]
        for thread in bombers:
            thread.start()
        time.sleep(1.0)  # the bombs are running
        noisy = p50_print(client, args.probes)
        stop.set()
        for thread in bombers:
            thread.join()
        client.close()

    print(
        f"sequential: {args.sequential} executions in {sequential_s:.0f}s; concurrent: "
        f"{args.concurrent} from {args.clients} clients in {concurrent_s:.0f}s"
    )
    print(f"{'resource':<20}{'after warm-up':>15}{'after the soak':>16}")
    for key in before:
        print(f"{key:<20}{before[key]:>15}{after[key]:>16}")
    for how, alone, beside in zip(("back to back", "paced"), quiet, noisy, strict=True):
        print(
            f"noisy neighbours ({how}): print(2+2) p50 {alone:.1f} ms alone, {beside:.1f} ms "
            f"beside memory and fork bombs: {beside / alone:.2f}x (target <= 2x)"
        )
    leaks = [
        key
        for key in ("open fds", "threads", "child processes", "mounts", "sandbox cgroups")
        if after[key] > before[key]
    ]
    if after["state dir entries"] > before["state dir entries"]:
        leaks.append("state dir entries")
    if after["resident kB"] > before["resident kB"] * 1.25 + 20_000:
        leaks.append("resident kB")
    for failure in failures.items:
        print("FAILED:", failure)
    for leak in leaks:
        print("LEAK:", leak, before[leak], "->", after[leak])
    return 1 if failures.items or leaks else 0


if __name__ == "__main__":
    sys.exit(main())
