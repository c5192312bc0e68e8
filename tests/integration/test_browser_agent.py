"""The browser agent on its own: the contract the controller (or a pod's caller) relies on."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import httpx
import pytest

from tests.support import ROOT

TOKEN = "a-session-token-of-32-characters"
PUBLIC_WEB = {
    "allowedDomains": None,
    "deniedDomains": [],
    "allowedPorts": [80, 443],
    "internalHosts": {},
}


@pytest.fixture(scope="module")
def agent() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    data = tempfile.mkdtemp(prefix="browser-agent-test-")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "browser_agent",
            "--data-dir",
            data,
            "--exit-on-stdin-eof",
            # The test runs as root: Chromium's sandbox refuses root.  The controller
            # never does this (agents run as their own uid); see test_browser_lifecycle.
            *(["--no-chromium-sandbox"] if os.geteuid() == 0 else []),
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={"PATH": os.environ["PATH"], "HOME": data, "TMPDIR": data},
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(TOKEN.encode() + b"\n")
    proc.stdin.flush()
    ready = json.loads(proc.stdout.readline())
    assert ready["ready"] is True and "iPhone 13" in ready["devices"]
    try:
        yield proc, f"http://127.0.0.1:{ready['port']}"
    finally:
        proc.kill()
        proc.wait()
        proc.stdin.close()
        proc.stdout.close()
        shutil.rmtree(data, ignore_errors=True)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token-wrong-token-wrong"}, {"Authorization": TOKEN}],
)
def test_every_call_needs_the_session_token(
    agent: tuple[subprocess.Popen[bytes], str], headers: dict[str, str]
) -> None:
    _, base = agent
    for method, path in [("GET", "/health"), ("POST", "/session"), ("GET", "/tabs")]:
        response = httpx.request(method, base + path, headers=headers)
        assert response.status_code == 401, (method, path)
        assert response.json()["error"] == "unauthorized"


def test_configure_once_then_use(agent: tuple[subprocess.Popen[bytes], str]) -> None:
    _, base = agent
    auth = {"Authorization": f"Bearer {TOKEN}"}
    health = httpx.get(base + "/health", headers=auth).json()
    assert (health["ok"], health["configured"]) == (True, False)
    # The agent checks the network it is given again: a bad or missing one (a controller
    # or an operator of another version) configures nothing.
    without_hosts = {k: v for k, v in PUBLIC_WEB.items() if k != "internalHosts"}
    for network, field in [
        ({**PUBLIC_WEB, "allowedDomains": ["*"]}, "network.allowedDomains"),
        ({**PUBLIC_WEB, "deniedDomains": ["10.0.0.1"]}, "network.deniedDomains"),
        ({**PUBLIC_WEB, "deniedDomains": ["faß.de"]}, "network.deniedDomains"),
        ({**PUBLIC_WEB, "internalHosts": {"m.test": "169.254.169.254"}}, "network.internalHosts"),
        ({**PUBLIC_WEB, "allowedPorts": [0]}, "network.allowedPorts"),
        (without_hosts, "network.internalHosts"),
        (None, "network"),
    ]:
        body = {"device": "Pixel 7", "network": network}
        bad = httpx.post(base + "/session", json=body, headers=auth)
        assert bad.status_code == 422, bad.text
        assert bad.json()["details"][0]["field"] == field, bad.text
    assert httpx.get(base + "/health", headers=auth).json()["configured"] is False
    configured = httpx.post(
        base + "/session", json={"device": "Pixel 7", "network": PUBLIC_WEB}, headers=auth
    )
    assert configured.status_code == 200, configured.text
    # A call resets the idle clock; health checks do not count as use.
    idle = [httpx.get(base + "/health", headers=auth).json()["idleS"] for _ in range(3)]
    assert idle == sorted(idle) and idle[0] < 1.0, idle
    assert httpx.get(base + "/health", headers=auth).json()["configured"] is True
    assert configured.json()["isMobile"] is True
    again = httpx.post(
        base + "/session", json={"device": "desktop", "network": PUBLIC_WEB}, headers=auth
    )
    assert again.status_code == 422
    assert again.json()["details"][0]["rule"] == "already_configured"
    refused = httpx.post(base + "/navigate", json={"url": "file:///etc/passwd"}, headers=auth)
    assert refused.status_code == 422


def test_the_agent_exits_when_its_stdin_closes() -> None:
    data = tempfile.mkdtemp(prefix="browser-agent-test-")
    proc = subprocess.Popen(
        [sys.executable, "-m", "browser_agent", "--data-dir", data, "--exit-on-stdin-eof"]
        + (["--no-chromium-sandbox"] if os.geteuid() == 0 else []),
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={"PATH": os.environ["PATH"], "HOME": data, "TMPDIR": data},
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(TOKEN.encode() + b"\n")
    proc.stdin.flush()
    assert json.loads(proc.stdout.readline())["ready"] is True
    proc.stdin.close()
    assert proc.wait(20) == 0
    proc.stdout.close()
    shutil.rmtree(data, ignore_errors=True)
