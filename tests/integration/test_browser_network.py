"""A browser session under the deployment's network policy, in local mode: names, not addresses.

The same ceiling as executions (NETWORK_ALLOWED_DOMAINS, NETWORK_DENIED_DOMAINS,
NETWORK_INTERNAL_HOSTS), enforced by the agent's own proxy on a real Chromium.  The
names lead to a page server on loopback through NETWORK_INTERNAL_HOSTS, so each refusal
is checked both ways: the API says so, and the page server never saw the request.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pages import PageServer
from tests.support import ServiceProcess

pytestmark = pytest.mark.timeout(120)

NAMES = ("files.test", "a.pages.test", "bad.pages.test", "other.test")


@pytest.fixture(scope="module")
def svc(pages: PageServer) -> Iterator[ServiceProcess]:
    service = ServiceProcess(
        browser_warm_agents="1",
        network_allowed_domains="files.test,*.pages.test",
        network_denied_domains="bad.pages.test",
        network_allowed_ports=str(pages.port),
        network_internal_hosts=",".join(f"{name}=127.0.0.1" for name in NAMES),
    )
    try:
        yield service
    finally:
        service.stop()


def open_session(svc: ServiceProcess, **body: object) -> str:
    response = svc.client.post("/browser/sessions", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["sessionId"])


@pytest.fixture(scope="module")
def session(svc: ServiceProcess) -> Iterator[str]:
    sid = open_session(svc)
    yield sid
    svc.client.delete(f"/browser/sessions/{sid}")


def navigate(svc: ServiceProcess, session: str, url: str, **more: object) -> dict[str, object]:
    response = svc.client.post(f"/browser/sessions/{session}/navigate", json={"url": url, **more})
    body: dict[str, object] = {"status": response.status_code, **response.json()}
    return body


def test_an_allowed_name_loads_and_an_unlisted_one_is_refused(
    svc: ServiceProcess, session: str, pages: PageServer
) -> None:
    loaded = navigate(svc, session, f"http://files.test:{pages.port}/form?ok")
    assert loaded["status"] == 200 and loaded["title"] == "Form"
    assert loaded["violations"] == [] and pages.hits("/form?ok") == 1
    for url, reason in [
        (f"http://other.test:{pages.port}/form?unlisted", "other.test is not an allowed domain"),
        (f"http://bad.pages.test:{pages.port}/form?denied", "bad.pages.test is denied"),
        (f"http://evilfiles.test:{pages.port}/form?lookalike", "not an allowed domain"),
        (f"http://files.test.evil.test:{pages.port}/form?suffix", "not an allowed domain"),
        (f"http://127.0.0.1:{pages.port}/form?literal", "is an IP address"),
        ("http://files.test:8443/form?port", "port 8443 is not allowed"),
        (f"https://other.test:{pages.port}/tls", "other.test is not an allowed domain"),
    ]:
        refused = navigate(svc, session, url)
        assert refused["status"] == 403, refused
        assert refused["error"] == "destination_forbidden"
        assert reason in str(refused["message"]), refused
    assert pages.hits("/form?") == 1 and pages.hits("/tls") == 0


def test_refused_subresources_and_redirects_are_reported_as_violations(
    svc: ServiceProcess, session: str, pages: PageServer
) -> None:
    other = f"http://other.test:{pages.port}/download?sub"
    page = navigate(svc, session, f"http://files.test:{pages.port}/image?src={other}")
    assert page["status"] == 200 and page["title"] == "image"
    assert page["violations"] == [
        {
            "kind": "network",
            "target": f"other.test:{pages.port}",
            "detail": "other.test is not an allowed domain",
        }
    ]
    assert pages.hits("/download") == 0
    # A redirect to a refused name is refused where it leads, like a navigation there.
    hop = f"http://files.test:{pages.port}/redirect?to=http://other.test:{pages.port}/form?hop"
    assert navigate(svc, session, hop)["status"] == 403
    assert pages.hits("/form?hop") == 0


def test_a_session_narrows_the_ceiling_and_may_not_widen_it(
    svc: ServiceProcess, pages: PageServer
) -> None:
    narrow = open_session(svc, network={"allowedDomains": ["a.pages.test"]})
    try:
        assert (
            navigate(svc, narrow, f"http://a.pages.test:{pages.port}/form?narrow")["status"] == 200
        )
        refused = navigate(svc, narrow, f"http://files.test:{pages.port}/form?narrowed-out")
        assert refused["status"] == 403 and "files.test is not an allowed domain" in str(
            refused["message"]
        )
        assert pages.hits("/form?narrowed-out") == 0
    finally:
        svc.client.delete(f"/browser/sessions/{narrow}")
    for names, field, rule in [
        (["files.test", "github.com"], "network.allowedDomains[1]", "outside_ceiling"),
        (["bad.pages.test"], "network.allowedDomains[0]", "denied"),
        (["*.evil.test"], "network.allowedDomains[0]", "outside_ceiling"),
        (["*.test"], "network.allowedDomains[0]", "too_broad"),
        (["10.0.0.1"], "network.allowedDomains[0]", "ip_literal"),
    ]:
        response = svc.client.post("/browser/sessions", json={"network": {"allowedDomains": names}})
        assert response.status_code == 422, response.text
        detail = response.json()["details"][0]
        assert (detail["field"], detail["rule"]) == (field, rule)


def test_executions_and_sessions_share_the_ceiling(svc: ServiceProcess, pages: PageServer) -> None:
    code = (
        "import urllib.request\n"
        f"print(urllib.request.urlopen('http://files.test:{pages.port}/form?code').status)"
    )
    result = svc.client.post("/execute", json={"code": code}).json()
    assert result["stdout"].strip() == "200", result
    assert pages.hits("/form?code") == 1
