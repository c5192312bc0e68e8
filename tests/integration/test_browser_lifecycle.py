"""Sessions end: idle timeout, maximum lifetime, DELETE, the session bound, and shutdown.

"Ended" is checked on the host, not only in the API: the agent's processes (found by
the HOME they all inherit) are gone and its private directory is removed.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser_support import agent_dirs, agent_home, agent_pids, settled
from tests.support import ServiceProcess, wait_for

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def svc() -> Iterator[ServiceProcess]:
    service = ServiceProcess(
        browser_warm_agents="1", max_browser_sessions="2", browser_max_idle_timeout_s="60"
    )
    try:
        yield service
    finally:
        service.stop()


def pids_of(svc: ServiceProcess, directory: Path) -> set[int]:
    """The processes of one agent: those whose HOME is its Chromium's directory."""
    marker = f"HOME={agent_home(directory)}\0".encode()
    found = set()
    for pid in agent_pids(svc.state_dir):
        try:
            if marker in Path(f"/proc/{pid}/environ").read_bytes():
                found.add(pid)
        except OSError:
            pass
    return found


def owner(pid: int) -> int | None:
    """The process's real uid (/proc/PID itself is root's for a process that is not
    dumpable, as Chromium's sandboxed ones are)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # it ended meanwhile
        return None
    return int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])


def open_session(
    svc: ServiceProcess, *, settle: bool = True, **fields: object
) -> tuple[str, set[Path]]:
    """Open a session; also return the agent directories alive then (its own among them),
    once the warm agent that replaces it has started whole (unless not to ``settle``: a
    session of a second's idle timeout would not outlive the wait)."""
    response = svc.client.post("/browser/sessions", json=fields)
    assert response.status_code == 201, response.text
    if settle:
        settled(svc, warm=1)  # every service of this module keeps one warm agent
    return str(response.json()["sessionId"]), {d for d in agent_dirs(svc.state_dir)}


def ended(svc: ServiceProcess, sid: str, dirs: set[Path]) -> bool:
    """The session is unknown, and one agent that was alive is gone: processes and files.

    Warm agents are not touched by a session's end, so the one that went was its agent.
    """
    if svc.client.get(f"/browser/sessions/{sid}").status_code != 404:
        return False
    return any(not d.exists() and not pids_of(svc, d) for d in dirs)


def seen(svc: ServiceProcess, dirs: set[Path]) -> dict[str, object]:
    return {d.name: (d.exists(), sorted(pids_of(svc, d))) for d in dirs}


def test_delete_kills_the_browser_and_removes_its_files(svc: ServiceProcess) -> None:
    sid, dirs = open_session(svc)
    assert all(pids_of(svc, d) for d in dirs if d.exists()), seen(svc, dirs)
    assert svc.client.delete(f"/browser/sessions/{sid}").status_code == 204
    wait_for(
        lambda: ended(svc, sid, dirs),
        what="the agent's processes and files to go",
        state=lambda: seen(svc, dirs),
    )
    assert svc.client.delete(f"/browser/sessions/{sid}").status_code == 404


def test_an_idle_session_expires(svc: ServiceProcess) -> None:
    sid, dirs = open_session(svc, settle=False, idleTimeoutS=1)
    info = svc.client.get(f"/browser/sessions/{sid}").json()
    assert info["idleTimeoutS"] == 1
    wait_for(
        lambda: ended(svc, sid, dirs),
        timeout_s=10,
        what="idle expiry",
        state=lambda: seen(svc, dirs),
    )


def test_use_keeps_a_session_alive_until_its_lifetime_ends(svc: ServiceProcess) -> None:
    sid, dirs = open_session(svc, settle=False, idleTimeoutS=1, maxLifetimeS=3)
    start = time.monotonic()
    # Calls every 0.3 s keep it from going idle; the lifetime still ends it.
    while svc.client.get(f"/browser/sessions/{sid}/tabs").status_code == 200:
        assert time.monotonic() - start < 10, "the session outlived its maxLifetimeS"
        time.sleep(0.3)
    assert time.monotonic() - start > 1.5, "closed before its lifetime, though in use"
    wait_for(lambda: ended(svc, sid, dirs), what="the agent to go")


def test_the_session_bound_is_a_429_with_retry_after(svc: ServiceProcess) -> None:
    opened = []
    try:
        for _ in range(2):
            opened.append(open_session(svc)[0])
        refused = svc.client.post("/browser/sessions")
        assert refused.status_code == 429
        assert refused.headers["Retry-After"].isdigit()
        assert "MAX_BROWSER_SESSIONS" in refused.json()["message"]
        svc.client.delete(f"/browser/sessions/{opened.pop()}")
        opened.append(open_session(svc)[0])
    finally:
        for sid in opened:
            svc.client.delete(f"/browser/sessions/{sid}")


@pytest.mark.skipif(os.geteuid() != 0, reason="agents get uids of their own only as root")
def test_each_agent_runs_wholly_as_a_uid_of_its_own_never_root(svc: ServiceProcess) -> None:
    sid, dirs = open_session(svc)
    try:
        # Directories of started agents (handed to their uid before the agent starts).
        started = {d: pids_of(svc, d) for d in dirs}
        owners = [d.stat().st_uid for d, pids in started.items() if pids]
        assert len(owners) >= 1
        assert len(set(owners)) == len(owners) and 0 not in owners
        for directory, pids in started.items():
            # The agent, its Playwright driver, the launcher's forwarder and Chromium.
            assert {owner(p) for p in pids} - {None} <= {directory.stat().st_uid}
        assert any(is_chromium(p) for pids in started.values() for p in pids)
    finally:
        svc.client.delete(f"/browser/sessions/{sid}")


@pytest.mark.skipif(os.geteuid() != 0, reason="agents get uids of their own only as root")
def test_the_agent_is_isolated_and_its_chromium_has_no_network_of_its_own(
    svc: ServiceProcess,
) -> None:
    sid, dirs = open_session(svc)
    try:
        pids = set().union(*(pids_of(svc, d) for d in dirs))
        agent = next(p for p in pids if b"browser_agent" in cmdline(p))
        assert cmdline(agent).split(b"\0")[1:3] == [b"-I", b"-c"], "python -I"
        cwd = Path(f"/proc/{agent}/cwd").resolve()
        assert cwd.stat().st_uid == 0 and not cwd.stat().st_mode & 0o022, "not its to write"
        host_net = os.readlink("/proc/self/ns/net")
        chromium = [p for p in pids if is_chromium(p)]
        assert chromium
        for pid in chromium:
            assert os.readlink(f"/proc/{pid}/ns/net") != host_net
            interfaces = Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]
            assert [line.split(":")[0].strip() for line in interfaces] == ["lo"]
    finally:
        svc.client.delete(f"/browser/sessions/{sid}")


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def is_chromium(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"/usr/lib/chromium/")
    except OSError:
        return False


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_nothing_survives_the_service(how: signal.Signals) -> None:
    service = ServiceProcess(browser_warm_agents="1")
    try:
        response = service.client.post("/browser/sessions")
        assert response.status_code == 201
        wait_for(lambda: len(agent_dirs(service.state_dir)) >= 2, what="a warm agent too")
        assert agent_pids(service.state_dir)
        os.kill(service.proc.pid, how)
        service.proc.wait(15)
        wait_for(
            lambda: not agent_pids(service.state_dir),
            timeout_s=15,
            what="every agent process to die with the service",
        )
    finally:
        service.stop()


def test_a_browser_that_cannot_start_is_a_503_naming_the_setting() -> None:
    service = ServiceProcess(browser_warm_agents="0", browser_executable="/nonexistent/chromium")
    try:
        response = service.client.post("/browser/sessions")
        assert response.status_code == 503, response.text
        body = response.json()
        assert body["error"] == "browser_unavailable"
        assert "BROWSER_EXECUTABLE" in body["message"]
        assert service.client.get("/health").status_code == 200  # executions are unaffected
        wait_for(lambda: not agent_dirs(service.state_dir), what="the failed agent's files to go")
    finally:
        service.stop()
