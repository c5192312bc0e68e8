"""With default settings a browser reaches no loopback or private address, by any route.

The pages are served on loopback by the test, so each refusal is checked both ways:
the API says 403 and the page server never saw the request.  Private and link-local
ranges are refused by the same check (unit-tested in test_browser_policy); no traffic
is ever sent to them from here.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pages import PageServer
from tests.support import ServiceProcess

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def svc() -> Iterator[ServiceProcess]:
    service = ServiceProcess(browser_warm_agents="1")
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def session(svc: ServiceProcess) -> str:
    response = svc.client.post("/browser/sessions")
    assert response.status_code == 201, response.text
    return str(response.json()["sessionId"])


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "localhost", "[::1]", "127.0.0.2", "2130706433", "[::ffff:127.0.0.1]"],
)
def test_loopback_pages_are_refused_by_default(
    svc: ServiceProcess, session: str, pages: PageServer, host: str
) -> None:
    path = f"/form?via={host}"
    response = svc.client.post(
        f"/browser/sessions/{session}/navigate", json={"url": f"http://{host}:{pages.port}{path}"}
    )
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["error"] == "destination_forbidden"
    assert "BROWSER_ALLOW_PRIVATE_NETWORKS" in body["message"]
    assert pages.hits(path) == 0


def test_https_to_loopback_is_refused_at_the_tunnel(
    svc: ServiceProcess, session: str, pages: PageServer
) -> None:
    response = svc.client.post(
        f"/browser/sessions/{session}/navigate",
        json={"url": f"https://localhost:{pages.port}/tls"},
    )
    assert response.status_code == 403, response.text
    assert pages.hits("/tls") == 0


def test_the_controller_itself_is_refused(svc: ServiceProcess, session: str) -> None:
    response = svc.client.post(
        f"/browser/sessions/{session}/navigate",
        json={"url": f"http://127.0.0.1:{svc.port}/health"},
    )
    assert response.status_code == 403, response.text


def test_the_session_still_works_after_refusals(svc: ServiceProcess, session: str) -> None:
    response = svc.client.post(f"/browser/sessions/{session}/navigate", json={"url": "about:blank"})
    assert response.status_code == 200, response.text
