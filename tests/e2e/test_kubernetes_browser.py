"""Browser sessions on Kubernetes, through the Ingress: BrowserSessions, the operator, pods.

The pages are tests/pages.py in a pod of namespace e2e-pages (tests/e2e/values.yaml lets
the browser pods reach that one namespace besides the public network).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kubernetes import client

from tests.e2e.conftest import Cluster
from tests.e2e.kube import SessionResources
from tests.e2e.release import (
    BROWSER_NAMESPACE,
    RELEASE_NAMESPACE,
    InClusterFiles,
    InClusterPages,
    Ingress,
    wait_healthy,
)
from tests.support import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

B = "/browser/sessions"
PLURAL = "browsersessions"


@pytest.fixture(scope="module")
def pages(cluster: Cluster) -> Iterator[InClusterPages]:
    served = InClusterPages(client.CoreV1Api(cluster.api))
    try:
        yield served
    finally:
        served.remove()


@pytest.fixture
def sessions(cluster: Cluster) -> SessionResources:
    return SessionResources(cluster.api, BROWSER_NAMESPACE, PLURAL)


def create(release: Ingress, **body: Any) -> dict[str, Any]:
    response = release.client.post(B, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


@pytest.fixture
def session(release: Ingress) -> Iterator[str]:
    sid = str(create(release)["sessionId"])
    yield sid
    release.client.delete(f"{B}/{sid}")


def navigate(release: Ingress, sid: str, url: str, **fields: Any) -> httpx.Response:
    return release.client.post(f"{B}/{sid}/navigate", json={"url": url, **fields})


def test_the_whole_browser_api_against_an_in_cluster_page(
    release: Ingress, pages: InClusterPages, session: str, core: client.CoreV1Api
) -> None:
    loaded = navigate(release, session, pages.url("/form"), waitUntil="domcontentloaded")
    assert loaded.status_code == 200, loaded.text
    assert (loaded.json()["status"], loaded.json()["title"]) == (200, "Form")
    filled = release.client.post(
        f"{B}/{session}/action", json={"action": "fill", "selector": "#name", "value": "k8s"}
    )
    assert filled.status_code == 200, filled.text
    clicked = release.client.post(
        f"{B}/{session}/action", json={"action": "click", "selector": "#go"}
    )
    assert clicked.status_code == 200, clicked.text
    html = release.client.get(f"{B}/{session}/content")
    assert html.headers["content-type"].startswith("text/html")
    assert "clicked:k8s" in html.text
    opened = release.client.post(f"{B}/{session}/tabs")
    assert opened.status_code == 201, opened.text
    tabs = release.client.get(f"{B}/{session}/tabs").json()
    assert len(tabs["tabs"]) == 2
    assert release.client.delete(f"{B}/{session}/tabs/{opened.json()['tabId']}").status_code == 204
    shot = release.client.get(f"{B}/{session}/screenshot")
    assert shot.headers["content-type"] == "image/png" and shot.content[:4] == b"\x89PNG"
    listed = release.client.get(B).json()
    assert session in [s["sessionId"] for s in listed["sessions"]]
    assert "/form" in pages.requests()


@pytest.mark.parametrize(
    ("device", "width", "agent"), [("mobile", 412, "Android"), ("desktop", 1280, "Windows")]
)
def test_device_emulation(
    release: Ingress, pages: InClusterPages, device: str, width: int, agent: str
) -> None:
    info = create(release, device=device)
    try:
        assert info["viewport"]["width"] == width
        assert agent in info["userAgent"]
        assert navigate(release, info["sessionId"], pages.url("/device")).status_code == 200
        html = release.client.get(f"{B}/{info['sessionId']}/content").text
        assert f">{width}x" in html
    finally:
        release.client.delete(f"{B}/{info['sessionId']}")


def test_a_bad_device_is_a_422_and_leaves_nothing(
    release: Ingress, sessions: SessionResources
) -> None:
    refused = release.client.post(B, json={"device": "Nokia 3310"})
    assert refused.status_code == 422, refused.text
    assert refused.json()["details"][0]["rule"] == "unknown_device"
    wait_for(
        lambda: (
            not [
                s
                for s in sessions.custom.list_namespaced_custom_object(
                    "sandbox-controller.dev", "v1", BROWSER_NAMESPACE, PLURAL
                )["items"]
                if s["spec"]["device"] == "Nokia 3310"
            ]
        ),
        timeout_s=30,
        what="the refused session to be deleted",
    )


def test_file_urls_are_refused(release: Ingress, session: str) -> None:
    refused = navigate(release, session, "file:///etc/passwd")
    assert refused.status_code == 422
    assert refused.json()["details"][0]["field"] == "url"


@pytest.mark.parametrize(
    "target",
    [
        "http://sandbox-sandbox-controller.sandbox.svc.cluster.local/health",  # the controller
        "https://kubernetes.default.svc/version",  # the API server
        "http://10.96.0.1/",  # the API server's Service address
    ],
)
def test_the_controller_and_the_api_server_are_out_of_reach(
    release: Ingress, session: str, target: str
) -> None:
    response = navigate(release, session, target, timeoutMs=4000)
    # Refused on the way (the agent's proxy answers 502, the tunnel fails, or the
    # navigation times out): never the target's own answer.
    assert response.status_code in (200, 502, 504), response.text
    assert response.status_code != 200 or response.json()["status"] in (None, 502), response.text


def test_another_namespaces_pod_is_out_of_reach(
    release: Ingress, session: str, in_cluster_files: InClusterFiles
) -> None:
    in_cluster_files.clear()
    response = navigate(release, session, in_cluster_files.url("/received"), timeoutMs=4000)
    assert response.status_code in (200, 502, 504), response.text
    assert response.status_code != 200 or response.json()["status"] in (None, 502), response.text


def test_deleting_a_session_removes_its_pod_and_secret(
    release: Ingress, sessions: SessionResources
) -> None:
    sid = create(release)["sessionId"]
    pod = sessions.pod_of(sid)
    assert sessions.secret_exists(pod)
    assert release.client.delete(f"{B}/{sid}").status_code == 204
    assert release.client.get(f"{B}/{sid}").status_code == 404
    wait_for(lambda: sessions.pod_gone(pod), timeout_s=60, what=f"pod {pod} to go")
    wait_for(
        lambda: not sessions.secret_exists(pod),
        timeout_s=60,
        what=f"secret {pod} to go",
    )


@pytest.mark.parametrize("limit", [{"idleTimeoutS": 3}, {"maxLifetimeS": 6, "idleTimeoutS": 60}])
def test_idle_timeout_and_lifetime_end_the_session_and_its_pod(
    release: Ingress,
    pages: InClusterPages,
    sessions: SessionResources,
    limit: dict[str, int],
) -> None:
    sid = create(release, **limit)["sessionId"]
    pod = sessions.pod_of(sid)
    # Used meanwhile (only the lifetime can end it then), or left alone.
    deadline = time.monotonic() + 30
    while release.client.get(f"{B}/{sid}").status_code == 200 and time.monotonic() < deadline:
        if "maxLifetimeS" in limit:
            navigate(release, sid, pages.url("/form"))
        time.sleep(0.5)
    gone = release.client.get(f"{B}/{sid}")
    assert gone.status_code == 404, gone.text
    assert "expired" in gone.json()["message"]
    body = sessions.get(sid)
    assert body is not None and body["status"]["phase"] == "Expired"
    wait_for(lambda: sessions.pod_gone(pod), timeout_s=60, what=f"pod {pod} to go")


def test_a_session_whose_pod_is_deleted_fails_with_a_reason(
    release: Ingress, sessions: SessionResources, core: client.CoreV1Api
) -> None:
    sid = create(release)["sessionId"]
    try:
        pod = sessions.pod_of(sid)
        core.delete_namespaced_pod(pod, BROWSER_NAMESPACE, grace_period_seconds=0)

        def failed() -> bool:
            return release.client.get(f"{B}/{sid}").status_code == 410

        wait_for(failed, timeout_s=30, what="the session to be Failed")
        gone = release.client.get(f"{B}/{sid}/tabs")
        assert gone.status_code == 410
        assert "was deleted" in gone.json()["message"]
        body = sessions.get(sid)
        assert body is not None and body["status"]["phase"] == "Failed"
        # The token goes with the pod (the Secret is the pod's), though the session stays.
        wait_for(
            lambda: not sessions.secret_exists(pod),
            timeout_s=60,
            what=f"secret {pod} to go",
        )
    finally:
        release.client.delete(f"{B}/{sid}")


def delete_pods(core: client.CoreV1Api, component: str) -> list[str]:
    selector = f"app.kubernetes.io/component={component}"
    pods = core.list_namespaced_pod(RELEASE_NAMESPACE, label_selector=selector).items
    for pod in pods:
        core.delete_namespaced_pod(pod.metadata.name, RELEASE_NAMESPACE)
    return [p.metadata.name for p in pods]


def running(core: client.CoreV1Api, component: str, not_in: list[str]) -> bool:
    selector = f"app.kubernetes.io/component={component}"
    pods = core.list_namespaced_pod(RELEASE_NAMESPACE, label_selector=selector).items
    return any(
        p.metadata.name not in not_in
        and p.status.phase == "Running"
        and all(c.ready for c in p.status.container_statuses or [])
        for p in pods
    )


@pytest.mark.timeout(300)
def test_sessions_outlive_a_restart_of_the_operator(
    release: Ingress, pages: InClusterPages, core: client.CoreV1Api
) -> None:
    sid = create(release)["sessionId"]
    try:
        old = delete_pods(core, "operator")
        assert navigate(release, sid, pages.url("/form")).status_code == 200  # it never waits
        wait_for(lambda: running(core, "operator", old), timeout_s=120, what="a new operator")
        assert navigate(release, sid, pages.url("/device")).status_code == 200
        other = create(release)["sessionId"]  # and the new operator opens sessions
        release.client.delete(f"{B}/{other}")
    finally:
        release.client.delete(f"{B}/{sid}")


@pytest.mark.timeout(300)
def test_sessions_outlive_a_restart_of_the_controller(
    release: Ingress, pages: InClusterPages, core: client.CoreV1Api
) -> None:
    sid = create(release)["sessionId"]
    try:
        old = delete_pods(core, "controller")
        wait_for(lambda: running(core, "controller", old), timeout_s=180, what="a new controller")
        wait_healthy(release)
        response = navigate(release, sid, pages.url("/form"))
        assert response.status_code == 200, response.text
        assert release.client.get(f"{B}/{sid}").status_code == 200
    finally:
        release.client.delete(f"{B}/{sid}")
