"""Admission by memory in local mode: executions beyond the budget wait their turn."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from tests.integration.test_sandbox_limits import host_processes_matching
from tests.support import ServiceProcess

pytestmark = pytest.mark.integration

CAP_MB = 256


def test_executions_beyond_the_memory_budget_wait_their_turn() -> None:
    # Room for two executions' caps (and the warm sandboxes), not three; four slots.
    with ServiceProcess(
        memory_limit_mb=str(CAP_MB),
        memory_budget_mb=str(2 * CAP_MB + 200),
        max_concurrent_executions="4",
        warm_sandboxes="4",
    ) as svc:
        memory = svc.client.get("/health").json()["memory"]
        assert memory["budgetMb"] == 2 * CAP_MB + 200
        assert 0 < memory["heldMb"] <= 200, memory  # the warm sandboxes, as measured
        marker = str(700_000 + uuid.uuid4().int % 99_999)
        code = f"import subprocess; subprocess.run(['sleep', '1.{marker}'])"
        results: list[dict[str, object]] = []

        def one() -> None:
            results.append(svc.execute(code, timeoutMs=20000))

        threads = [threading.Thread(target=one) for _ in range(4)]
        for thread in threads:
            thread.start()
        most = 0
        while any(t.is_alive() for t in threads):
            most = max(most, len(host_processes_matching(f"sleep 1.{marker}")))
            time.sleep(0.02)
        for thread in threads:
            thread.join()
        assert [r["exitCode"] for r in results] == [0, 0, 0, 0]
        assert most == 2
        assert svc.client.get("/health").json()["memory"]["heldMb"] == memory["heldMb"]
