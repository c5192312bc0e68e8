"""What only Kubernetes mode promises, tried on the installed chart through the Ingress.

The code sees nothing of the cluster; the runner pods' NetworkPolicy lets them send
nothing anywhere and hear only the controller; the pod's memory limit bounds the whole
execution; a pod exists only for its execution; a replica that dies leaves no pod
behind; a full quota is a clear 503; the service fails closed when no runner pod works.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import httpx
import pytest
from kubernetes import client

from tests.e2e.conftest import STATE_DIR, Cluster
from tests.e2e.kube import (
    RUNNER_IMAGE,
    create_pod,
    delete_ignoring_absent,
    logs,
    runner_shaped,
    wait_for_phase,
)
from tests.e2e.release import (
    FILES_NAMESPACE,
    RELEASE_NAMESPACE,
    SANDBOX_NAMESPACE,
    WARM_PODS,
    InClusterFiles,
    Ingress,
    wait_healthy,
)
from tests.support import ROOT, free_port, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

OWNER = "sandbox-controller.dev/replica"
EXECUTION = "sandbox-controller.dev/execution"
RUNNERS = "app.kubernetes.io/component=runner"


def runner_pods(core: client.CoreV1Api, selector: str = RUNNERS) -> list[client.V1Pod]:
    return [
        p
        for p in core.list_namespaced_pod(SANDBOX_NAMESPACE, label_selector=selector).items
        if p.metadata.deletion_timestamp is None
    ]


def controller_pods(core: client.CoreV1Api) -> list[client.V1Pod]:
    selector = "app.kubernetes.io/component=controller"
    return [
        p
        for p in core.list_namespaced_pod(RELEASE_NAMESPACE, label_selector=selector).items
        if p.metadata.deletion_timestamp is None and p.status.phase == "Running"
    ]


def test_the_code_sees_nothing_of_the_cluster(release: Ingress) -> None:
    code = (
        "import os, json, socket\n"
        "seen = {'token': os.path.exists('/var/run/secrets/kubernetes.io'),\n"
        "        'env': sorted(k for k in os.environ if k.startswith('KUBERNETES')\n"
        "                      or k.endswith(('_SERVICE_HOST', '_SERVICE_PORT'))),\n"
        "        'interfaces': [n for _, n in socket.if_nameindex()]}\n"
        "reached = []\n"
        "for host, port in [('10.96.0.1', 443), ('10.244.0.1', 16443), ('10.96.0.10', 53),\n"
        "                   ('10.244.0.1', 80), ('1.1.1.1', 443)]:\n"
        "    try:\n"
        "        socket.create_connection((host, port), timeout=2).close()\n"
        "        reached.append(host)\n"
        "    except OSError:\n"
        "        pass\n"
        "seen['reached'] = reached\n"
        "print(json.dumps(seen))\n"
    )
    seen = json.loads(release.execute(code)["stdout"])
    assert seen == {"token": False, "env": [], "interfaces": ["lo"], "reached": []}


PROBE = """
import json, socket, sys, time
def reaches(host, port, kind):
    try:
        if kind == "udp":
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
            # A DNS query for kubernetes.default.svc.cluster.local, type A.
            query = (b"\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00"
                     b"\\x0akubernetes\\x07default\\x03svc\\x07cluster\\x05local\\x00\\x00\\x01\\x00\\x01")
            s.sendto(query, (host, port)); s.recvfrom(512)
        else:
            socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False
targets = json.loads(sys.argv[1])
# NetworkPolicy is put in force by the CNI a moment after a pod starts (kube-router on a
# busy node: seconds). With a settle time, wait until the first target is refused, as a
# runner pod is: its job arrives only once it has warmed up (and the sandbox inside has no
# network at all meanwhile). Then every target must be refused.
deadline = time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline and reaches(*targets[0]):
    time.sleep(0.5)
print(json.dumps([f"{h}:{p}" for h, p, k in targets if reaches(h, p, k)]), flush=True)
"""


def probe_pod(
    name: str, labels: dict[str, str], targets: list[list[Any]], settle_s: float
) -> dict[str, Any]:
    """A pod of the runner's shape (the only kind the runner namespace admits) that tries
    to reach ``targets`` and prints which it reached."""
    command = ("/usr/bin/python3", "-c", PROBE, json.dumps(targets), str(settle_s))
    return runner_shaped(name, command, labels)


def probe(
    core: client.CoreV1Api,
    namespace: str,
    name: str,
    labels: dict[str, str],
    targets: list[list[Any]],
    settle_s: float = 0.0,
) -> list[str]:
    create_pod(core, namespace, probe_pod(name, labels, targets, settle_s))
    try:
        wait_for_phase(core, namespace, name, {"Succeeded"}, timeout=90)
        reached: list[str] = json.loads(logs(core, namespace, name).strip().splitlines()[-1])
        return reached
    finally:
        delete_ignoring_absent(lambda: core.delete_namespaced_pod(name, namespace))


def test_runner_pods_can_send_nothing_and_hear_only_the_controller(
    release: Ingress, core: client.CoreV1Api, in_cluster_files: InClusterFiles
) -> None:
    # Outside the sandbox, the pod's own network: only the NetworkPolicy stands there.
    controller_ip = controller_pods(core)[0].status.pod_ip
    targets = [
        ["10.96.0.1", 443, "tcp"],  # the API server, through its Service
        ["10.244.0.1", 16443, "tcp"],  # the API server, at the node
        ["10.96.0.10", 53, "udp"],  # cluster DNS
        [in_cluster_files.pod_ip, 8000, "tcp"],  # another pod
        [controller_ip, 8080, "tcp"],  # the controller itself
    ]
    # (Not labelled as a runner: the controller's sweep would delete it as an orphan.
    # Every pod there is denied egress; the runners' own policy adds no egress either.)
    reached = probe(core, SANDBOX_NAMESPACE, "e2e-probe-egress", {"e2e": "probe"}, targets, 30)
    assert reached == []

    # The same probe with no runner labels in another namespace reaches what it may: the
    # probe itself works, so the empty list above is the policy's doing.
    control = probe(core, FILES_NAMESPACE, "e2e-probe-control", {}, targets[2:4])
    assert control == ["10.96.0.10:53", f"{in_cluster_files.pod_ip}:8000"]

    # Ingress: another pod may not reach a runner pod's port; the controller does (every
    # execution shows it).
    warm = wait_for(
        lambda: [p for p in runner_pods(core) if p.status.pod_ip],
        timeout_s=60,
        what="a warm runner pod",
    )
    target = [[warm[0].status.pod_ip, 8080, "tcp"]]
    assert probe(core, FILES_NAMESPACE, "e2e-probe-ingress", {}, target) == []


def test_a_memory_bomb_across_children_is_stopped_by_the_pod_limit(release: Ingress) -> None:
    # Eight children of 400 MB each: every one is under the per-process limit (1 GiB),
    # together far over the pod's (about 1.4 GiB).
    code = (
        "import os, time\n"
        "for _ in range(8):\n"
        "    if os.fork() == 0:\n"
        "        x = bytearray(400 << 20)\n"
        "        for i in range(0, len(x), 4096): x[i] = 1\n"
        "        time.sleep(30); os._exit(0)\n"
        "for _ in range(8):\n"
        "    os.wait()\n"
        "print('survived')\n"
    )
    result = release.execute(code, timeoutMs=60_000)
    assert {"kind": "limit", "target": "memory"} in [
        {"kind": v["kind"], "target": v["target"]} for v in result["violations"]
    ], result
    assert "memory limit of the whole execution" in result["stderr"]
    # The service is unharmed and the next execution gets a fresh pod.
    assert release.execute("print('next')")["stdout"] == "next\n"


def test_a_pod_exists_only_for_its_execution(release: Ingress, core: client.CoreV1Api) -> None:
    wait_healthy(release, warm=WARM_PODS)
    before = {p.metadata.name for p in runner_pods(core)}
    results: list[dict[str, Any]] = []
    run = threading.Thread(
        target=lambda: results.append(release.execute("import time; time.sleep(3)"))
    )
    run.start()
    (serving,) = wait_for(
        lambda: runner_pods(core, f"{RUNNERS},{EXECUTION}"),
        timeout_s=10,
        what="the pod serving the execution, labelled with its id",
    )
    assert serving.metadata.name in before, "a warm pod took it"
    run.join(30)
    (result,) = results
    assert serving.metadata.labels[EXECUTION] == result["executionId"]

    def deleted() -> bool:
        return serving.metadata.name not in {p.metadata.name for p in runner_pods(core)}

    wait_for(deleted, timeout_s=30, what="the pod to be deleted after its one execution")
    assert before - {p.metadata.name for p in runner_pods(core)} == {serving.metadata.name}
    wait_healthy(release, warm=WARM_PODS)  # and a new one replaced it
    per_replica = len(runner_pods(core)) / max(len(controller_pods(core)), 1)
    assert per_replica <= 4 + 1, "never more than the pool and a replacement"


def test_a_dead_controller_leaves_no_runner_pod_behind(
    release: Ingress, core: client.CoreV1Api
) -> None:
    wait_healthy(release, warm=WARM_PODS)
    (victim,) = controller_pods(core)
    owned = f"{RUNNERS},{OWNER}={victim.metadata.name}"
    assert runner_pods(core, owned), "the replica has its warm pods"
    errors: list[BaseException] = []

    def long_run() -> None:
        try:
            httpx.post(
                release.base_url + "/execute",
                timeout=60,
                headers={"Authorization": f"Bearer {release.token}"},
                json={"code": "import time; time.sleep(30)", "timeoutMs": 40_000},
            )
        except httpx.HTTPError as exc:  # the replica is killed under it: expected
            errors.append(exc)

    runs = [threading.Thread(target=long_run) for _ in range(2)]
    for run in runs:
        run.start()
    wait_for(
        lambda: len(runner_pods(core, f"{owned},{EXECUTION}")) >= 1,
        timeout_s=30,
        what="the executions to be in their pods",
    )
    # SIGKILL, no grace: the replica gets no chance to clean up after itself.
    killed_at = time.monotonic()
    core.delete_namespaced_pod(victim.metadata.name, RELEASE_NAMESPACE, grace_period_seconds=0)
    wait_for(
        lambda: not runner_pods(core, owned),
        timeout_s=90,
        what=f"the runner pods of {victim.metadata.name} to go",
        interval_s=0.5,
    )
    cleaned_in = time.monotonic() - killed_at
    print(f"runner pods of a killed replica gone {cleaned_in:.1f}s after it was killed")
    assert cleaned_in < 90  # the documented bound (docs/kubernetes.md)
    for run in runs:
        run.join(70)
    wait_healthy(release, warm=1, timeout_s=180)
    assert release.execute("print('served by the new replica')")["exitCode"] == 0


def test_a_full_quota_is_a_clear_503(release: Ingress, core: client.CoreV1Api) -> None:
    wait_healthy(release, warm=WARM_PODS)
    quota = core.read_namespaced_resource_quota("runner-pods", SANDBOX_NAMESPACE)
    original = quota.spec.hard["pods"]
    core.patch_namespaced_resource_quota(
        "runner-pods", SANDBOX_NAMESPACE, {"spec": {"hard": {"pods": "1"}}}
    )
    try:
        # The warm pods still serve; their replacements are refused; then a cold start is.
        deadline = time.monotonic() + 120
        while True:
            started = time.monotonic()
            response = release.client.post("/execute", json={"code": "print(1)"})
            assert time.monotonic() - started < 30, "a full quota must not hang a request"
            if response.status_code == 503:
                break
            assert response.status_code == 200, response.text
            assert time.monotonic() < deadline, "the quota was never reached"
        body = response.json()
        assert body["error"] == "sandbox_unavailable"
        assert "ResourceQuota" in body["message"] and "exceeded quota" in body["message"]
    finally:
        core.patch_namespaced_resource_quota(
            "runner-pods", SANDBOX_NAMESPACE, {"spec": {"hard": {"pods": original}}}
        )
    wait_healthy(release, warm=WARM_PODS, timeout_s=180)  # the pool refills once the quota allows


def test_the_seccomp_installer_puts_the_profile_on_the_node(
    cluster: Cluster, core: client.CoreV1Api, namespace: str
) -> None:
    if not cluster.local:
        pytest.skip("reads the kubelet's directory on this machine")
    from tests.chart import CHART, one, render

    objects = render(
        "seccompInstaller.enabled=true",
        "seccompInstaller.kubeletRootDir=" + str(STATE_DIR / "kubelet"),
        "runner.seccompProfile=sandbox-controller-e2e/runner-seccomp.json",
        files=(CHART / "local-values.yaml",),  # the images loaded into the node
        namespace=namespace,
    )
    apps = client.AppsV1Api(cluster.api)
    daemonset = one(objects, "DaemonSet")
    profile = next(v for v in daemonset["spec"]["template"]["spec"]["volumes"] if "configMap" in v)
    config_map = one(objects, "ConfigMap", profile["configMap"]["name"])
    core.create_namespaced_config_map(namespace, config_map)
    apps.create_namespaced_daemon_set(namespace, daemonset)
    installed = STATE_DIR / "kubelet/seccomp/sandbox-controller-e2e/runner-seccomp.json"
    try:
        wait_for(installed.exists, timeout_s=90, what=f"{installed}", interval_s=0.5)
        expected = json.loads((ROOT / "helm/seccomp/runner-seccomp.json").read_text())
        assert json.loads(installed.read_text()) == expected
    finally:
        apps.delete_namespaced_daemon_set(daemonset["metadata"]["name"], namespace)
        if installed.exists():
            installed.unlink()
            installed.parent.rmdir()


def test_without_a_working_runner_pod_the_service_fails_closed(
    cluster: Cluster, namespace: str
) -> None:
    # The controller itself, on this machine with the admin kubeconfig (outside a pod,
    # as in development), against a namespace whose pods name a profile no node has.
    port = free_port()
    env = {
        **os.environ,
        "AUTH_TOKEN": "fail-closed-test-token-1234",
        "BACKEND": "kubernetes",
        "KUBECONFIG": cluster.kubeconfig,
        "KUBERNETES_NAMESPACE": namespace,
        "RUNNER_IMAGE": RUNNER_IMAGE,
        "RUNNER_IMAGE_PULL_POLICY": "Never",
        "RUNNER_SECCOMP_PROFILE": "nowhere/missing.json",
        "RUNNER_POD_START_TIMEOUT_S": "30",
        "PORT": str(port),
        "STATE_DIR": tempfile.mkdtemp(prefix="fail-closed-"),
        "REPLICA_NAME": "fail-closed-test",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def health() -> httpx.Response | None:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
            except httpx.TransportError:
                assert proc.poll() is None, "the controller exited instead of failing closed"
                return None

        answer = wait_for(health, timeout_s=90, what="the controller to answer")
        assert answer.status_code == 503
        detail = answer.json()["sandbox"]["detail"]
        assert "runner pod self-test failed" in detail
        assert "missing.json" in detail or "CreateContainer" in detail, detail
        refused = httpx.post(
            f"http://127.0.0.1:{port}/execute",
            json={"code": "print(1)"},
            headers={"Authorization": "Bearer fail-closed-test-token-1234"},
        )
        assert refused.status_code == 503
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.timeout(360)
def test_helm_test_passes_on_the_installed_release(release: Ingress, cluster: Cluster) -> None:
    from tests.chart import helm

    args = ["--kubeconfig", str(cluster.kubeconfig), "test", "sandbox", "-n", RELEASE_NAMESPACE]
    done = helm(*args, "--timeout", "5m", timeout_s=330)
    # The test pod exits 0 only once /health was ok and print(6 * 7) printed 42; it is
    # deleted as it succeeds (nothing of it stays).
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"Phase:\s+Succeeded", done.stdout), done.stdout
