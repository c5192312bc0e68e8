"""The e2e tier's cluster: a real single-node Kubernetes cluster on this machine.

The session fixture uses the cluster that ``KUBECONFIG`` points at when it answers, or
the local one when it runs already; otherwise it runs tests/cluster/up.sh (build or take
from cache, start everything) and tears that cluster down with tests/cluster/down.sh at
the end of the session (``E2E_KEEP_CLUSTER=1`` keeps it). Each test gets a namespace of its
own; when a test fails, node, pod, event and log state is printed before the namespace
is deleted.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client, config
from urllib3.exceptions import HTTPError

from tests.e2e.kube import delete_ignoring_absent
from tests.e2e.release import InClusterFiles, Ingress, install, wait_healthy
from tests.support import wait_for

CLUSTER_DIR = Path(__file__).resolve().parent.parent / "cluster"
STATE_DIR = Path(os.environ.get("CLUSTER_STATE_DIR", "/var/lib/sandbox-controller-cluster"))
CLUSTER_UP_TIMEOUT = 45 * 60
"""A cold machine builds every binary first (about 20 minutes here); a warm one ~1 min."""


@dataclass(frozen=True)
class Cluster:
    api: client.ApiClient
    kubeconfig: str
    local: bool
    """True when the node runs on this machine (tests may look at host processes)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The session fixture may build and start the whole cluster inside the first test's
    # setup: keep each test's timeout for the test itself, and bound the start-up by
    # CLUSTER_UP_TIMEOUT instead.
    here = Path(__file__).resolve().parent
    for item in items:
        if Path(str(item.fspath)).resolve().parent != here:
            continue
        marker = item.get_closest_marker("timeout")
        seconds = marker.args[0] if marker and marker.args else item.config.getini("timeout")
        item.add_marker(pytest.mark.timeout(float(seconds), func_only=True), append=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport:
    report: pytest.TestReport = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _answers(kubeconfig: str) -> bool:
    try:
        api = config.new_client_from_config(config_file=kubeconfig)
        client.VersionApi(api).get_code(_request_timeout=5)
    except (OSError, HTTPError, config.ConfigException, client.ApiException):
        return False
    return True


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    admin = STATE_DIR / "kubeconfig" / "admin.kubeconfig"
    # A cluster that is already running (KUBECONFIG's, or one `make cluster-up` left) is
    # used and left running; only one started here is stopped at the end.
    running = [k for k in (os.environ.get("KUBECONFIG", ""), str(admin)) if k and _answers(k)]
    started = not running
    if running:
        kubeconfig = running[0]
    else:
        result = subprocess.run(
            [str(CLUSTER_DIR / "up.sh")],
            stdout=subprocess.PIPE,
            text=True,
            timeout=CLUSTER_UP_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            # up.sh printed the failing daemon's log; leave nothing half-started behind.
            subprocess.run([str(CLUSTER_DIR / "down.sh")], timeout=300, check=False)
            pytest.fail(f"tests/cluster/up.sh failed ({result.returncode}); see its output")
        kubeconfig = result.stdout.strip().splitlines()[-1]
    api = config.new_client_from_config(config_file=kubeconfig)
    local = started or (admin.exists() and admin.samefile(kubeconfig))
    try:
        yield Cluster(api=api, kubeconfig=kubeconfig, local=local)
    finally:
        api.close()
        if started and os.environ.get("E2E_KEEP_CLUSTER") != "1":
            subprocess.run([str(CLUSTER_DIR / "down.sh")], timeout=300, check=False)


@pytest.fixture
def core(cluster: Cluster) -> client.CoreV1Api:
    return client.CoreV1Api(cluster.api)


@pytest.fixture
def namespace(
    request: pytest.FixtureRequest, cluster: Cluster, core: client.CoreV1Api
) -> Iterator[str]:
    """A fresh namespace; dumped on failure, deleted afterwards."""
    name = f"e2e-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": name, "labels": {"e2e": "true"}}})
    # Pods can only be created once the namespace's default service account exists.
    wait_for(
        lambda: _exists(lambda: core.read_namespaced_service_account("default", name)),
        timeout_s=30,
        what=f"service account default in {name}",
        interval_s=0.5,
    )
    try:
        yield name
    finally:
        report = getattr(request.node, "report_call", None)
        if report is None or report.failed:
            _dump(cluster, core, name)
        delete_ignoring_absent(
            lambda: core.delete_namespace(
                name, grace_period_seconds=0, propagation_policy="Background"
            )
        )


def _exists(read: object) -> bool | None:
    try:
        read()  # type: ignore[operator]
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return True


def _dump(cluster: Cluster, core: client.CoreV1Api, namespace: str) -> None:
    """Prints what explains most e2e failures: node conditions, pods, events, logs."""
    print(f"\n===== cluster state for namespace {namespace} =====")
    try:
        for node in core.list_node().items:
            print(f"node {node.metadata.name}:")
            for cond in node.status.conditions or []:
                print(f"  {cond.type}={cond.status} {cond.reason}: {cond.message}")
        for pod in core.list_namespaced_pod(namespace).items:
            print(f"pod {pod.metadata.name}: phase={pod.status.phase} ip={pod.status.pod_ip}")
            for status in pod.status.container_statuses or []:
                print(f"  container {status.name}: {status.state}")
            try:
                log = core.read_namespaced_pod_log(pod.metadata.name, namespace, tail_lines=40)
                print("  log:\n    " + "\n    ".join(str(log).splitlines()))
            except client.ApiException as exc:
                print(f"  log unavailable: {exc.reason}")
        for event in core.list_namespaced_event(namespace).items:
            obj = event.involved_object
            print(f"event {obj.kind}/{obj.name}: {event.type} {event.reason}: {event.message}")
    except (client.ApiException, HTTPError, OSError) as exc:
        print(f"could not read cluster state: {exc}")
    if cluster.local:
        for daemon in ("kubelet", "containerd", "kube-router", "kube-proxy"):
            path = STATE_DIR / "logs" / f"{daemon}.log"
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-15:]
                print(f"--- {path} (tail) ---\n" + "\n".join(tail))


@pytest.fixture(scope="session")
def release(cluster: Cluster) -> Iterator[Ingress]:
    """The chart installed as `make k8s-up` installs it, healthy through the Ingress."""
    url, token = install()
    ingress = Ingress(url, token)
    wait_healthy(ingress)
    yield ingress
    ingress.client.close()


@pytest.fixture(scope="session")
def api(release: Ingress) -> Ingress:
    """The contract's target (tests/contract): the service through the Ingress."""
    return release


@pytest.fixture(scope="session")
def uploads_api(release: Ingress) -> Ingress:
    return release


@pytest.fixture(scope="session")
def in_cluster_files(cluster: Cluster) -> Iterator[InClusterFiles]:
    files = InClusterFiles(client.CoreV1Api(cluster.api))
    try:
        yield files
    finally:
        files.remove()


@pytest.fixture
def files(in_cluster_files: InClusterFiles) -> InClusterFiles:
    return in_cluster_files
