"""Faults from outside: a sandbox's supervisor killed, a full state disk, a browser killed.

(SIGKILL of the service itself mid-run: tests/integration/test_execution_cgroups.py.)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser_support import agent_pids, settled
from tests.integration.test_browser_lifecycle import is_chromium
from tests.integration.test_sandbox_limits import host_processes_matching
from tests.support import ServiceProcess, parent_pid, wait_for

pytestmark = pytest.mark.integration


def ancestor_agent(pid: int) -> int:
    """The browser agent process (``python -m browser_agent``) above ``pid``: the one the
    controller started, whose reaping is how it learns of the agent's end."""
    while pid > 1:
        if b"browser_agent" in Path(f"/proc/{pid}/cmdline").read_bytes():
            return pid
        pid = parent_pid(pid)
    raise AssertionError("no agent process above the browser")


def test_a_supervisor_killed_from_outside_fails_only_its_own_execution(
    service: ServiceProcess,
) -> None:
    marker = f"7.{uuid.uuid4().int % 10**6:06d}"
    result: dict[str, Any] = {}
    run = threading.Thread(
        target=lambda: result.update(
            service.execute(f"import subprocess; subprocess.run(['sleep', '{marker}'])")
        )
    )
    run.start()
    wait_for(lambda: bool(host_processes_matching(f"sleep {marker}")))
    sleeper = int(host_processes_matching(f"sleep {marker}")[0].split()[0])
    supervisor = parent_pid(
        parent_pid(sleeper)
    )  # sleep <- the code's process <- the supervisor (PID 1)
    assert b"stub" in Path(f"/proc/{supervisor}/cmdline").read_bytes()
    os.kill(supervisor, signal.SIGKILL)
    run.join(30)
    assert [(v["kind"], v["target"]) for v in result["violations"]] == [("other", "sandbox")]
    assert "supervisor" in result["violations"][0]["detail"]
    assert "[sandbox] other sandbox" in result["stderr"]
    assert service.execute("print(2+2)")["stdout"] == "4\n"


@contextlib.contextmanager
def full_disk(size: str) -> Iterator[str]:
    """A small tmpfs, traversable by the sandbox's uid, to stand for the state disk."""
    where = tempfile.mkdtemp(prefix="sandbox-full-state-")
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=755", "tmpfs", where], check=True
    )
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", where], check=False)
        shutil.rmtree(where, ignore_errors=True)


def fill(directory: str) -> None:
    subprocess.run(
        ["dd", "if=/dev/zero", f"of={directory}/filler", "bs=64k"], capture_output=True, check=False
    )


def test_a_full_state_disk_is_a_503_that_names_it_not_a_crash() -> None:
    with full_disk("1m") as state:
        fill(state)
        svc = ServiceProcess(state_dir=state, browser_warm_agents="0", expect_healthy=False)
        try:
            health = svc.client.get("/health")
            assert health.status_code == 503
            assert "STATE_DIR" in health.json()["sandbox"]["detail"]
            assert "No space left" in health.json()["sandbox"]["detail"]
            refused = svc.client.post("/execute", json={"code": "print(1)"})
            assert refused.status_code == 503
            assert "STATE_DIR" in refused.json()["message"]
            browser = svc.client.post("/browser/sessions")
            assert browser.status_code == 503
            assert browser.json()["error"] == "browser_unavailable"
            assert "STATE_DIR" in browser.json()["message"]
            assert svc.proc.poll() is None  # still serving, saying why
        finally:
            svc.stop()


def test_a_disk_filled_while_serving_leaves_executions_working() -> None:
    # Executions need no disk (their workspace and /tmp are in memory).
    with full_disk("64m") as state:
        svc = ServiceProcess(state_dir=state, browser_warm_agents="0", warm_sandboxes="1")
        try:
            fill(state)
            assert svc.execute("print(2+2)")["stdout"] == "4\n"
            written = svc.execute("open('a.txt', 'w').write('x' * 1000)")
            assert [f["name"] for f in written["files"]] == ["a.txt"]
        finally:
            svc.stop()


def test_a_browser_killed_from_outside_fails_its_session_clearly() -> None:
    svc = ServiceProcess(browser_warm_agents="1")
    try:
        created = svc.client.post("/browser/sessions")
        assert created.status_code == 201
        sid = created.json()["sessionId"]
        settled(svc, warm=1)  # no agent half-started among those listed
        browsers = [pid for pid in agent_pids(svc.state_dir) if is_chromium(pid)]
        main = [  # the browser process itself, not its children or crash handlers
            pid
            for pid in browsers
            if parent_pid(pid) not in browsers
            and Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"/usr/lib/chromium/chromium")
        ]
        assert main
        # The session's agent and the warm one: both lose their browsers.
        agents = {ancestor_agent(pid) for pid in main}
        for pid in main:
            os.kill(pid, signal.SIGKILL)
        answer = svc.client.post(f"/browser/sessions/{sid}/navigate", json={"url": "about:blank"})
        assert answer.status_code == 502, answer.text
        assert answer.json()["error"] == "browser_exited", answer.text
        # The agent ends with its browser; the session is then closed, and says so once.
        wait_for(lambda: not any(Path(f"/proc/{agent}").exists() for agent in agents))
        closed = svc.client.post(f"/browser/sessions/{sid}/navigate", json={"url": "about:blank"})
        assert closed.status_code == 502
        assert "session is closed" in closed.json()["message"]
        assert svc.client.get(f"/browser/sessions/{sid}").status_code == 404
        # A new session is unaffected.
        again = svc.client.post("/browser/sessions")
        assert again.status_code == 201, again.text
        sid2 = again.json()["sessionId"]
        ok = svc.client.post(f"/browser/sessions/{sid2}/navigate", json={"url": "about:blank"})
        assert ok.status_code == 200, ok.text
    finally:
        svc.stop()
