"""Network by name on Kubernetes: runner pods reach allowed names through the proxy only.

The release is installed again with tests/e2e/egress-values.yaml (two names leading to a
server this test runs on the host, at the pod bridge's address), then installed without
it once the module is done.  Executions go through the Ingress, as a caller's do; the
runner pod's relay takes the sandbox's connections to the egress proxy's Deployment,
which checks the grant and the names; NetworkPolicy lets the runner pods reach that
proxy and nothing else, and the proxy the public network and those two names.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.release import Ingress, install, wait_healthy
from tests.origin import start_origin
from tests.support import ROOT, wait_for

pytestmark = pytest.mark.e2e

BRIDGE = "10.244.0.1"
PORT = 18081
VALUES = ROOT / "tests/e2e/egress-values.yaml"


@pytest.fixture(scope="module")
def origin() -> Iterator[None]:
    server = start_origin(BRIDGE, PORT)
    yield
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def networked(release: Ingress, origin: None) -> Iterator[Ingress]:
    """The release with names allowed; afterwards, as the rest of the tier expects it."""

    def names_allowed(count: int) -> bool:
        body = release.healthy()
        return (
            bool(body)
            and body["network"]["allowedDomains"] == count
            and (body["executions"]["warmSandboxes"] >= 1)
        )

    install(VALUES)
    wait_for(lambda: names_allowed(2), timeout_s=180, what="the controller with names allowed")
    try:
        yield release
    finally:
        install()
        wait_for(lambda: names_allowed(0), timeout_s=180, what="the controller without names")
        wait_healthy(release)


def fetch(*hosts: str) -> str:
    return (
        "import urllib.request\n"
        f"for host in {list(hosts)!r}:\n"
        "    try:\n"
        f"        print(urllib.request.urlopen(f'http://{{host}}:{PORT}/').read().decode())\n"
        "    except Exception as exc:\n"
        "        print(type(exc).__name__, exc)\n"
    )


def refusals(result: dict[str, Any]) -> dict[str, str]:
    return {v["target"]: v["detail"] for v in result["violations"] if v["kind"] == "network"}


def test_allowed_names_are_reached_and_others_refused_and_reported(networked: Ingress) -> None:
    result = networked.execute(fetch("files.test", "evil.test"))
    lines = result["stdout"].splitlines()
    assert lines[0] == f"hello files.test:{PORT}", result
    assert lines[1].startswith("HTTPError HTTP Error 403")
    assert "not an allowed domain" in refusals(result)[f"evil.test:{PORT}"]
    assert f"[sandbox] network evil.test:{PORT}: " in result["stderr"]
    usage = result["usage"]["network"]
    assert usage["connections"] == 2 and usage["bytesReceived"] > 0


def test_requests_goes_through_the_proxy_too_and_a_request_narrows_the_names(
    networked: Ingress,
) -> None:
    code = (
        "import requests\n"
        "for host in ('files.test', 'other.test'):\n"
        f"    print(requests.get(f'http://{{host}}:{PORT}/').text)\n"
    )
    result = networked.execute(code, network={"allowedDomains": ["files.test"]})
    lines = result["stdout"].splitlines()
    assert lines[0] == f"hello files.test:{PORT}"
    assert f"other.test:{PORT}" in refusals(result)
    refused = networked.client.post(
        "/execute", json={"code": "pass", "network": {"allowedDomains": ["github.com"]}}
    )
    assert refused.status_code == 422
    assert refused.json()["details"][0]["rule"] == "outside_ceiling"


def test_nothing_but_the_proxy_leads_out_of_a_runner_pod(networked: Ingress) -> None:
    code = (
        "import socket\n"
        "for target in [('10.244.0.1', 18081), ('10.96.0.1', 443), ('1.1.1.1', 53)]:\n"
        "    try:\n"
        "        socket.create_connection(target, timeout=2)\n"
        "        print('REACHED', target)\n"
        "    except OSError as exc:\n"
        "        print('failed', type(exc).__name__)\n"
    )
    result = networked.execute(code)
    lines = result["stdout"].splitlines()
    assert len(lines) == 3 and all(line.startswith("failed ") for line in lines), lines
    assert "10.244.0.1:18081" in refusals(result)


def open_session(release: Ingress, **body: Any) -> str:
    response = release.client.post("/browser/sessions", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["sessionId"])


def test_a_browser_session_is_held_to_the_same_names_by_its_agent(networked: Ingress) -> None:
    """The BrowserSession carries the policy the controller decided; the operator gives
    it to the pod's agent, whose proxy enforces it; the browser pods' NetworkPolicy
    routes the internal names' address, on the allowed ports only."""
    sessions = "/browser/sessions"
    held = open_session(networked)
    narrow = open_session(networked, network={"allowedDomains": ["other.test"]})
    try:

        def go(sid: str, url: str) -> Any:
            return networked.client.post(f"{sessions}/{sid}/navigate", json={"url": url})

        loaded = go(held, f"http://files.test:{PORT}/")
        assert loaded.status_code == 200, loaded.text
        assert loaded.json()["violations"] == []
        content = networked.client.get(f"{sessions}/{held}/content")
        assert f"hello files.test:{PORT}" in content.text
        for sid, url, reason in [
            (held, f"http://evil.test:{PORT}/", "evil.test is not an allowed domain"),
            (held, f"http://{BRIDGE}:{PORT}/", "is an IP address"),
            (held, f"https://github.com:{PORT}/", "github.com is not an allowed domain"),
            (narrow, f"http://files.test:{PORT}/", "files.test is not an allowed domain"),
        ]:
            refused = go(sid, url)
            assert refused.status_code == 403, (url, refused.text)
            assert reason in refused.json()["message"], refused.text
        assert go(narrow, f"http://other.test:{PORT}/").status_code == 200
    finally:
        for sid in (held, narrow):
            networked.client.delete(f"{sessions}/{sid}")
    wider = networked.client.post(sessions, json={"network": {"allowedDomains": ["github.com"]}})
    assert wider.status_code == 422
    assert wider.json()["details"][0]["field"] == "network.allowedDomains[0]"


def test_a_context_is_held_to_its_names_on_every_call(networked: Ingress) -> None:
    """A context's grant is signed for its lifetime and given to its pod once; each call
    is accounted and reported on its own, and nothing but the proxy leads out."""
    created = networked.client.post(
        "/contexts", json={"network": {"allowedDomains": ["files.test"]}}
    )
    assert created.status_code == 201, created.text
    context = created.json()["contextId"]
    assert created.json()["allowedDomains"] == ["files.test"]
    calls = f"/contexts/{context}/execute"
    try:
        first = networked.client.post(calls, json={"code": fetch("files.test", "other.test")})
        assert first.status_code == 200, first.text
        lines = first.json()["stdout"].splitlines()
        assert lines[0] == f"hello files.test:{PORT}", first.json()
        assert f"other.test:{PORT}" in refusals(first.json())
        direct = networked.client.post(
            calls,
            json={
                "code": "import socket\ntry:\n"
                f"    socket.create_connection(('{BRIDGE}', {PORT}), timeout=2)\n"
                "    print('REACHED')\nexcept OSError as exc:\n    print('failed')\n"
            },
        )
        assert direct.json()["stdout"] == "failed\n", direct.json()
        assert f"{BRIDGE}:{PORT}" in refusals(direct.json())
        # The violations are per call: a clean call reports none.
        clean = networked.client.post(calls, json={"code": fetch("files.test")})
        assert clean.json()["violations"] == [], clean.json()
    finally:
        networked.client.delete(f"/contexts/{context}")
    wider = networked.client.post("/contexts", json={"network": {"allowedDomains": ["github.com"]}})
    assert wider.status_code == 422
