"""Benchmark: one key's print(2+2) beside another key that uses the service as fast as it can.

Prints the honest key's p50 while the other key runs nothing (the baseline), then
``print(1)`` back to back on one, two and four threads, then CPU-bound code on two,
each as a ratio against the baseline of the same run (tests/hostile.py measures it, as
the hostile-caller tests do).  Figures, not assertions: the machines are shared and
noisy.  Both keys have two of the service's four slots.

    .venv/bin/python bench/fairness_bench.py [--seconds 8]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: the shared helpers are in tests/

from tests.hostile import attack  # noqa: E402
from tests.integration.test_hostile_callers import ATTACKER, VICTIM, keys_file  # noqa: E402
from tests.support import ServiceProcess  # noqa: E402


def back_to_back(svc: ServiceProcess, code: str) -> Callable[[threading.Event], None]:
    def run(stop: threading.Event) -> None:
        headers = {"Authorization": f"Bearer {ATTACKER}"}
        with httpx.Client(base_url=svc.base_url, timeout=60, headers=headers) as client:
            while not stop.is_set():
                client.post("/execute", json={"code": code, "timeoutMs": 3000})

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    keys = tempfile.mkdtemp(prefix="fairness-bench-")
    os.chmod(keys, 0o755)
    with ServiceProcess(auth_keys_file=keys_file(keys), max_concurrent_executions="4") as svc:
        cases = [
            ("nothing", []),
            ("print(1) back to back, 1 thread", [back_to_back(svc, "print(1)")]),
            ("print(1) back to back, 2 threads", [back_to_back(svc, "print(1)")] * 2),
            ("print(1) back to back, 4 threads", [back_to_back(svc, "print(1)")] * 4),
            ("a busy loop, 2 threads", [back_to_back(svc, "while True: pass")] * 2),
        ]
        for name, attackers in cases:
            print(attack(name, svc, VICTIM, attackers, duration_s=args.seconds).line())


if __name__ == "__main__":
    main()
