"""SIGTERM during runs: nothing new is admitted, what runs finishes within the grace, then
whatever still runs is killed and the service exits (controller.draining)."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import ServiceProcess, parent_pid, wait_for

pytestmark = pytest.mark.timeout(90)


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                children.setdefault(parent_pid(entry.name), []).append(int(entry.name))
            except (OSError, ValueError):
                continue  # gone meanwhile
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text()


def in_background(svc: ServiceProcess, code: str) -> tuple[threading.Thread, dict[str, Any]]:
    """POST /execute from another thread; the answer (or the error) lands in the dict."""
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            with httpx.Client(base_url=svc.base_url, timeout=60) as client:
                outcome["response"] = client.post(
                    "/execute",
                    json={"code": code, "timeoutMs": 60_000},
                    headers={"Authorization": f"Bearer {svc.token}"},
                )
        except httpx.HTTPError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=call)
    thread.start()
    wait_for(
        lambda: httpx.get(svc.base_url + "/health").json()["executions"]["admitted"] == 1,
        what="the execution admitted",
    )
    return thread, outcome


def test_a_run_in_flight_finishes_and_nothing_new_is_admitted() -> None:
    svc = ServiceProcess(shutdown_grace_s="30")
    try:
        thread, outcome = in_background(svc, "import time; time.sleep(1.5); print('finished')")
        svc.proc.send_signal(signal.SIGTERM)
        stopping = wait_for(
            lambda: (h := httpx.get(svc.base_url + "/health")).status_code == 503 and h,
            what="/health saying stopping",
        )
        assert stopping.json()["status"] == "stopping"
        refused = svc.client.post("/execute", json={"code": "print(1)"})
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert refused.json()["error"] == "shutting_down"
        assert svc.client.get("/metrics").status_code == 200  # still served, for operators
        thread.join(30)
        response = outcome["response"]
        assert response.status_code == 200 and response.json()["stdout"] == "finished\n"
        svc.proc.wait(15)  # exits once nothing is in flight
    finally:
        svc.stop()


def test_past_the_grace_what_still_runs_is_killed() -> None:
    svc = ServiceProcess(shutdown_grace_s="1")
    try:
        thread, outcome = in_background(svc, "import time; time.sleep(60); print('never')")
        sandbox = descendants(svc.proc.pid)
        assert sandbox
        svc.proc.send_signal(signal.SIGTERM)
        svc.proc.wait(30)  # the grace is 1 s: it does not wait for the 60 s of code
        thread.join(30)
        response = outcome.get("response")
        assert response is None or response.status_code != 200, response.text
        # Nothing of the sandbox outlives the service (its janitor may take a moment).
        wait_for(lambda: not [p for p in sandbox if alive(p)], what="the sandbox gone")
        assert "still in flight after 1 s" in svc.output()
    finally:
        svc.stop()
