"""Network by name as Kubernetes mode runs it, on loopback: runner pod, relay, proxy process.

``python -m runner serve --egress`` (as a runner pod runs it, with only the image's
files on its path) takes a job that carries a grant; its relay takes the sandbox's
connections to ``python -m controller.egress`` (the proxy's Deployment runs exactly
that), which checks the grant and the names.  The cluster's own run of the same is in
tests/e2e/test_kubernetes_egress.py.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from runner.contract import EgressGrant, Job, Outcome
from runner.wire import decode_result, encode_job, streamed_parts

from controller.egress.grants import sign
from sandbox_common.domains import DomainPolicy, parse_patterns
from tests.integration.test_runner_cli import ServedRunner, image_path, job
from tests.origin import start_origin
from tests.support import ROOT, free_port, wait_for

pytestmark = pytest.mark.integration
__all__ = ["image_path"]  # the fixture, shared with the runner's own tests

KEY = secrets.token_hex(16)
POLICY = DomainPolicy(parse_patterns(["files.test"]), ports=frozenset())


@pytest.fixture(scope="module")
def origin() -> Iterator[int]:
    server = start_origin()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def proxy(origin: int) -> Iterator[int]:
    port = free_port()
    env = {
        **os.environ,
        "EGRESS_GRANT_KEY": KEY,
        "EGRESS_PROXY_PORT": str(port),
        "NETWORK_INTERNAL_HOSTS": "files.test=127.0.0.1,evil.test=127.0.0.1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller.egress"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )

    def listening() -> bool:
        assert proc.poll() is None, proc.communicate()[0]
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
        except httpx.TransportError:
            return False
        return True

    wait_for(listening, timeout_s=20, what="the egress proxy to listen")
    yield port
    proc.terminate()
    proc.communicate(timeout=10)


def run_with_grant(image_path: str, work: Job, grant: EgressGrant) -> Outcome:
    token = secrets.token_urlsafe(24)
    runner = ServedRunner(image_path, token, egress=True)
    try:
        wait_for(runner.ready, timeout_s=30, what="the runner to listen")
        sent = replace(work, egress=grant)
        response = runner.post(encode_job(sent), token)
        assert response.status_code == 200, response.text
        result = decode_result(streamed_parts(response.content)[1], sent)
        assert isinstance(result, Outcome), result
        return result
    finally:
        runner.close()


def grant(proxy_port: int, origin: int, *, key: str = KEY, connections: int = 8) -> EgressGrant:
    policy = replace(POLICY, ports=frozenset({origin}))
    token = sign(key.encode(), "ex-relay", policy, time.time() + 60)
    return EgressGrant(f"127.0.0.1:{proxy_port}", token, connections, 1 << 20)


def fetch_code(*urls: str) -> str:
    return (
        "import urllib.request\n"
        f"for url in {list(urls)!r}:\n"
        "    try:\n"
        "        print(urllib.request.urlopen(url).read().decode())\n"
        "    except Exception as exc:\n"
        "        print(type(exc).__name__, exc)\n"
    )


def test_a_runner_pod_reaches_allowed_names_through_the_proxy_and_reports_refusals(
    image_path: str, proxy: int, origin: int
) -> None:
    code = fetch_code(f"http://files.test:{origin}/", f"http://evil.test:{origin}/")
    outcome = run_with_grant(image_path, job(code), grant(proxy, origin))
    lines = outcome.stdout.decode().splitlines()
    assert lines[0] == f"hello files.test:{origin}"
    assert lines[1].startswith("HTTPError HTTP Error 403")
    refused = {d.target: d.detail for d in outcome.denials if d.kind == "network"}
    assert "not an allowed domain" in refused[f"evil.test:{origin}"]
    assert outcome.network is not None and outcome.network.connections == 2
    assert outcome.network.bytes_received > len(lines[0])


def test_the_runner_keeps_the_execution_caps(image_path: str, proxy: int, origin: int) -> None:
    url = f"http://files.test:{origin}/"
    outcome = run_with_grant(
        image_path, job(fetch_code(url, url)), grant(proxy, origin, connections=1)
    )
    assert outcome.stdout.decode().splitlines()[1].startswith("HTTPError HTTP Error 403")
    assert any("NETWORK_MAX_CONNECTIONS" in d.detail for d in outcome.denials)


def test_a_forged_grant_or_a_missing_proxy_gets_nothing_out(
    image_path: str, proxy: int, origin: int
) -> None:
    url = f"http://files.test:{origin}/"
    forged = run_with_grant(image_path, job(fetch_code(url)), grant(proxy, origin, key="x" * 32))
    assert "407" in forged.stdout.decode()
    gone = replace(grant(proxy, origin), proxy=f"127.0.0.1:{free_port()}")
    unreachable = run_with_grant(image_path, job(fetch_code(url)), gone)
    assert "502" in unreachable.stdout.decode()
