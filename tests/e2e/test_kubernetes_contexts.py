"""Code contexts on Kubernetes, through the Ingress: CodeContexts, the operator, pods.

The contract (tests/contract/contexts.py) runs here too, in test_contract.py; these are
what only a cluster has: the resource and its pod, a controller or an operator that
restarts under a live context, a pod that dies, the operator's expiry.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.e2e.conftest import Cluster
from tests.e2e.kube import SessionResources
from tests.e2e.release import SANDBOX_NAMESPACE, Ingress, wait_healthy
from tests.e2e.test_kubernetes_browser import delete_pods, running
from tests.support import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

C = "/contexts"


@pytest.fixture
def contexts(cluster: Cluster) -> SessionResources:
    return SessionResources(cluster.api, SANDBOX_NAMESPACE, "codecontexts")


def create(release: Ingress, **body: Any) -> str:
    response = release.client.post(C, json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["contextId"])


@pytest.fixture
def context(release: Ingress) -> Iterator[str]:
    context_id = create(release)
    yield context_id
    release.client.delete(f"{C}/{context_id}")


def run(release: Ingress, context_id: str, code: str) -> dict[str, Any]:
    response = release.client.post(f"{C}/{context_id}/execute", json={"code": code})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_a_context_is_a_resource_and_a_runner_pod_of_its_own(
    release: Ingress, contexts: SessionResources, core: client.CoreV1Api, context: str
) -> None:
    body = contexts.get(context)
    assert body is not None and body["status"]["phase"] == "Ready"
    assert body["metadata"]["labels"]["sandbox-controller.dev/key"]  # the key's name only
    pod = core.read_namespaced_pod(contexts.pod_of(context), SANDBOX_NAMESPACE)
    assert pod.metadata.labels["app.kubernetes.io/component"] == "code-context"
    assert pod.metadata.owner_references[0].name == context
    assert "--context" in pod.spec.containers[0].command
    assert pod.spec.host_users is False and pod.spec.automount_service_account_token is False
    run(release, context, "x = 41")
    assert run(release, context, "print(x + 1)")["stdout"] == "42\n"
    # The operator records what the runner did, on its next look.
    wait_for(
        lambda: (contexts.get(context) or {}).get("status", {}).get("calls") == 2,
        timeout_s=30,
        what="the calls recorded on the CodeContext",
    )
    listed = release.client.get(C).json()["contexts"]
    assert [c["calls"] for c in listed if c["contextId"] == context] == [2]


def test_deleting_a_context_removes_its_pod_and_secret(
    release: Ingress, contexts: SessionResources
) -> None:
    context_id = create(release)
    pod = contexts.pod_of(context_id)
    assert contexts.secret_exists(pod)
    assert release.client.delete(f"{C}/{context_id}").status_code == 204
    assert release.client.get(f"{C}/{context_id}").status_code == 404
    wait_for(lambda: contexts.pod_gone(pod), timeout_s=60, what=f"pod {pod} to go")
    wait_for(
        lambda: not contexts.secret_exists(pod),
        timeout_s=60,
        what=f"secret {pod} to go",
    )


def test_an_idle_context_expires_and_its_pod_goes(
    release: Ingress, contexts: SessionResources
) -> None:
    context_id = create(release, idleTimeoutS=3)
    pod = contexts.pod_of(context_id)
    try:
        wait_for(
            lambda: release.client.get(f"{C}/{context_id}").status_code == 404,
            timeout_s=60,
            what="the idle context to expire",
        )
        gone = release.client.get(f"{C}/{context_id}")
        assert "expired" in gone.json()["message"], gone.text
        body = contexts.get(context_id)
        assert body is not None and body["status"]["phase"] == "Expired"
        wait_for(lambda: contexts.pod_gone(pod), timeout_s=60, what=f"pod {pod} to go")
    finally:
        release.client.delete(f"{C}/{context_id}")


def test_a_long_call_is_use_not_idleness(release: Ingress) -> None:
    """The runner's clock counts from the end of the last operation: a call longer than
    the idle timeout must not let the operator expire its context under it."""
    short = create(release, idleTimeoutS=2)
    try:
        result = run(release, short, "import time; time.sleep(6); print('done')")
        assert result["stdout"] == "done\n"
        assert run(release, short, "print('still here')")["stdout"] == "still here\n"
    finally:
        release.client.delete(f"{C}/{short}")


def test_a_context_whose_pod_is_deleted_fails_with_a_reason(
    release: Ingress, contexts: SessionResources, core: client.CoreV1Api
) -> None:
    context_id = create(release)
    try:
        run(release, context_id, "x = 1")
        core.delete_namespaced_pod(
            contexts.pod_of(context_id), SANDBOX_NAMESPACE, grace_period_seconds=0
        )
        wait_for(
            lambda: release.client.get(f"{C}/{context_id}").status_code == 410,
            timeout_s=30,
            what="the context to be Failed",
        )
        gone = release.client.post(f"{C}/{context_id}/execute", json={"code": "print(x)"})
        assert gone.status_code == 410, gone.text
        assert "was deleted" in gone.json()["message"]
        body = contexts.get(context_id)
        assert body is not None and body["status"]["phase"] == "Failed"
    finally:
        release.client.delete(f"{C}/{context_id}")


def test_contexts_outlive_a_restart_of_the_controller_and_of_the_operator(
    release: Ingress, core: client.CoreV1Api, context: str
) -> None:
    run(release, context, "kept = 'across restarts'")
    for component in ("controller", "operator"):
        old = delete_pods(core, component)
        wait_for(
            lambda c=component, o=old: running(core, c, o),  # type: ignore[misc]
            timeout_s=180,
            what=f"a new {component}",
        )
        wait_healthy(release)
        assert run(release, context, "print(kept)")["stdout"] == "across restarts\n"
    other = create(release)  # and the new ones open contexts
    release.client.delete(f"{C}/{other}")
