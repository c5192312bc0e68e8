"""The API server is reachable from a pod the usual way: the ``kubernetes`` Service and
the pod's service-account token (what the operator and the controller will use)."""

from __future__ import annotations

import pytest
from kubernetes import client

from tests.e2e.kube import create_pod, logs, pod, terminated_exit_code, wait_for_phase

pytestmark = pytest.mark.e2e

SCRIPT = """
import json, os, ssl, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
token = open(f"{sa}/token").read()
ctx = ssl.create_default_context(cafile=f"{sa}/ca.crt")
namespace = open(f"{sa}/namespace").read()
req = urllib.request.Request(
    f"https://{host}:{port}/api/v1/namespaces/{namespace}/pods",
    headers={"Authorization": f"Bearer {token}"},
)
try:
    urllib.request.urlopen(req, context=ctx, timeout=10)
except urllib.error.HTTPError as exc:
    print(host, exc.code, json.load(exc)["reason"])
"""


@pytest.mark.timeout(120)
def test_pod_reaches_the_api_server_through_the_kubernetes_service(
    core: client.CoreV1Api, namespace: str
) -> None:
    manifest = pod("api", ["/usr/bin/python3", "-c", SCRIPT])
    manifest["spec"]["automountServiceAccountToken"] = True
    create_pod(core, namespace, manifest)

    done = wait_for_phase(core, namespace, "api", {"Succeeded", "Failed"}, timeout=90)

    out = logs(core, namespace, "api")
    assert terminated_exit_code(done) == 0, out
    # Authenticated as the namespace's default service account, which RBAC lets list
    # nothing: the TLS handshake, the token and the authorizer all took part.
    assert out.split() == ["10.96.0.1", "403", "Forbidden"]
