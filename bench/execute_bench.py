"""Benchmark: POST /execute against a bare `python3 -c` start, measured in the same run.

Prints latency percentiles of both (measured interleaved, one of each in turn), their
ratio (execute p50 / bare p50), the throughput of /execute with concurrent clients (wrk
when installed), and the CPU the service and its sandboxes spend per request.  Figures,
not assertions: the machines are shared and noisy, so only ratios against the same-run
baseline, and CPU time per request, are meaningful.

    .venv/bin/python bench/execute_bench.py [--requests 300] [--clients 8] [--seconds 10]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: the shared service launcher is in tests/

from tests.support import ServiceProcess  # noqa: E402

CODE = "print(2+2)"
BARE = ["/usr/bin/python3", "-c", CODE]


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50": statistics.median(ordered), "p90": pick(0.90), "p99": pick(0.99)}


def bare_python(n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run(BARE, stdout=subprocess.DEVNULL, check=True)
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def connection(service: ServiceProcess) -> http.client.HTTPConnection:
    """A plain keep-alive connection: the cheapest client, so its cost stays off the figures."""
    return http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)


def execute(service: ServiceProcess, conn: http.client.HTTPConnection) -> float:
    body = json.dumps({"code": CODE}).encode()
    start = time.perf_counter()
    conn.request(
        "POST",
        "/execute",
        body,
        {"Authorization": f"Bearer {service.token}", "Content-Type": "application/json"},
    )
    response = conn.getresponse()
    payload = response.read()
    elapsed = (time.perf_counter() - start) * 1000
    if response.status != 200 or json.loads(payload)["stdout"] != "4\n":
        raise SystemExit(f"unexpected answer {response.status}: {payload[:300]!r}")
    return elapsed


def process_cpu_ms(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def machine_busy_ms() -> float:
    """CPU time spent by the whole machine (all cores), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) * 1000 / os.sysconf("SC_CLK_TCK")


class CpuAccount:
    """CPU time of the service and every sandbox it starts, from a cgroup (v1 cpuacct).

    Unlike wall-clock figures this does not depend on what else the machine is doing,
    so it gives the service's capacity: about cores * 1000 / (ms per request) requests/s.
    """

    ROOT = Path("/sys/fs/cgroup/cpuacct")

    def __init__(self) -> None:
        self.path = self.ROOT / f"sandbox-bench-{os.getpid()}"
        self.path.mkdir()

    @classmethod
    def available(cls) -> bool:
        return os.geteuid() == 0 and (cls.ROOT / "cpuacct.usage").exists()

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def used_ms(self) -> float:
        return int((self.path / "cpuacct.usage").read_text()) / 1e6

    def close(self) -> None:
        for pid in (self.path / "cgroup.procs").read_text().split():
            (self.ROOT / "cgroup.procs").write_text(pid)
        self.path.rmdir()


def throughput(service: ServiceProcess, clients: int, seconds: float) -> tuple[int, float, int]:
    done = [0] * clients
    errors = [0] * clients
    stop_at = time.monotonic() + seconds

    def worker(i: int) -> None:
        conn = connection(service)
        while time.monotonic() < stop_at:
            try:
                execute(service, conn)
                done[i] += 1
            except (SystemExit, OSError):
                errors[i] += 1
                conn = connection(service)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return sum(done), elapsed, sum(errors)


# Non-2xx answers are counted by wrk; correctness of the body is checked by the sequential run.
WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{"code": "print(2+2)"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer TOKEN"
done = function(summary, latency, requests)
  local line = "WRK %d %d %.3f\\n"
  io.write(string.format(line, summary.requests, summary.errors.status, summary.duration / 1e6))
end
"""


def throughput_wrk(service: ServiceProcess, clients: int, seconds: float) -> tuple[int, float, int]:
    """The same load from wrk (C, one process): the clients' own CPU stays small."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(WRK_SCRIPT.replace("TOKEN", service.token))
        script.flush()
        done = subprocess.run(
            [
                "wrk",
                "-t",
                "2",
                "-c",
                str(clients),
                "-d",
                f"{seconds:.0f}s",
                "-s",
                script.name,
                f"http://127.0.0.1:{service.port}/execute",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 60,
        )
    line = next(x for x in done.stdout.splitlines() if x.startswith("WRK "))
    _, requests, errors, elapsed = line.split()
    return int(requests) - int(errors), float(elapsed), int(errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--client",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="load generator for the throughput run (auto: wrk if installed)",
    )
    args = parser.parse_args()

    account = CpuAccount() if CpuAccount.available() else None
    service = ServiceProcess()
    if account:
        # Sandboxes are started by the service after it is healthy: all land in the group.
        account.add(service.proc.pid)
    try:
        conn = connection(service)
        for _ in range(20):  # warm-up: connection, code paths, pool
            execute(service, conn)
        # Interleaved, one of each in turn: on a shared, noisy machine both series then
        # see the same conditions, which is what makes their ratio meaningful.
        bare, sequential = [], []
        for _ in range(args.requests):
            bare += bare_python(1)
            sequential.append(execute(service, conn))
        # And with no pause at all: then every request's replacement sandbox competes
        # with the next request for the same cores (a throughput test at concurrency 1).
        back_to_back = [execute(service, conn) for _ in range(args.requests)]
        controller_before, machine_before = process_cpu_ms(service.proc.pid), machine_busy_ms()
        service_before = account.used_ms() if account else 0.0
        use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk"))
        load = throughput_wrk if use_wrk else throughput
        done, elapsed, errors = load(service, args.clients, args.seconds)
        service_cpu = (account.used_ms() - service_before) if account else None
        controller_cpu = process_cpu_ms(service.proc.pid) - controller_before
        machine_cpu = machine_busy_ms() - machine_before
    finally:
        service.stop()
        if account:
            account.close()
    b, e = percentiles(bare), percentiles(sequential)
    print(
        f"bare python3 -c  ({args.requests} runs)  p50 {b['p50']:.2f} ms  p90 {b['p90']:.2f}  "
        f"p99 {b['p99']:.2f}"
    )
    print(
        f"POST /execute    ({args.requests} paced)    p50 {e['p50']:.2f} ms  p90 "
        f"{e['p90']:.2f}  p99 {e['p99']:.2f}"
    )
    print(f"ratio execute-p50 / bare-p50: {e['p50'] / b['p50']:.2f}  (target <= 0.80)")
    t = percentiles(back_to_back)
    print(
        f"POST /execute    ({args.requests} back to back)  p50 {t['p50']:.2f} ms  p90 "
        f"{t['p90']:.2f}  p99 {t['p99']:.2f}  (ratio {t['p50'] / b['p50']:.2f})"
    )
    print(
        f"throughput, {args.clients} clients ({'wrk' if use_wrk else 'python threads'}) for "
        f"{elapsed:.1f} s: {done / elapsed:.1f} "
        f"requests/s ({done} ok, {errors} errors; target >= 100)"
    )
    print(
        f"CPU per request during the throughput run: controller process "
        f"{controller_cpu / max(done, 1):.2f} ms, whole machine "
        f"{machine_cpu / max(done, 1):.2f} ms (includes the clients and anything else running)"
    )
    if service_cpu is not None:
        per_request = service_cpu / max(done, 1)
        print(
            f"CPU per request of the service and its sandboxes (cgroup): {per_request:.2f} ms "
            f"-> capacity on {os.cpu_count()} idle cores ~{os.cpu_count() * 1000 / per_request:.0f}"
            " requests/s (before the clients' own CPU)"
        )


if __name__ == "__main__":
    main()
