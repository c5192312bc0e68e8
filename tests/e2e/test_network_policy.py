"""Proof 3: NetworkPolicy is enforced (kube-router's firewall). A client pod reaches a
Service by its ClusterIP (kube-proxy); a default-deny egress policy cuts it off; a policy
that allows egress to the Service's pods lets it through again."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from tests.e2e.kube import create_pod, logs, pod, wait_for_phase
from tests.support import wait_for

pytestmark = pytest.mark.e2e

SERVER_PORT = 8080
SERVICE_PORT = 80

# One connection attempt every half second, one line each: "<n> open" or "<n> blocked".
CLIENT = """
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
n = 0
while True:
    n += 1
    try:
        socket.create_connection((host, port), timeout=1).close()
        print(n, "open", flush=True)
    except OSError as exc:
        print(n, "blocked", type(exc).__name__, flush=True)
    time.sleep(0.5)
"""


def _attempts(core: client.CoreV1Api, namespace: str) -> list[bool]:
    """Every attempt the client has made so far: True where the connection opened."""
    return [
        line.split()[1] == "open"
        for line in logs(core, namespace, "client").splitlines()
        if len(line.split()) >= 2
    ]


def _wait_for_steady(
    core: client.CoreV1Api, namespace: str, after: int, opened: bool, what: str
) -> int:
    """Waits for three consecutive attempts, made after attempt ``after``, that all
    opened (or all failed); returns the attempt count at that point."""

    def probe() -> int | None:
        attempts = _attempts(core, namespace)
        recent = attempts[after:]
        if len(recent) >= 3 and all(a == opened for a in recent[-3:]):
            return len(attempts)
        return None

    return wait_for(probe, timeout_s=60, what=what, interval_s=0.5)


def _policy(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


@pytest.mark.timeout(240)
def test_default_deny_egress_blocks_a_service_and_an_allowing_policy_lets_it_through(
    cluster: Any, core: client.CoreV1Api, namespace: str
) -> None:
    net = client.NetworkingV1Api(cluster.api)
    create_pod(
        core,
        namespace,
        pod(
            "server",
            ["/usr/bin/python3", "-m", "http.server", str(SERVER_PORT)],
            labels={"app": "server"},
            host_users=None,
            ports=(SERVER_PORT,),
        ),
    )
    core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "server"},
            "spec": {
                "selector": {"app": "server"},
                "ports": [{"port": SERVICE_PORT, "targetPort": SERVER_PORT}],
            },
        },
    )
    cluster_ip = core.read_namespaced_service("server", namespace).spec.cluster_ip
    wait_for_phase(core, namespace, "server", {"Running"}, timeout=90)
    create_pod(
        core,
        namespace,
        pod(
            "client",
            ["/usr/bin/python3", "-c", CLIENT, cluster_ip, str(SERVICE_PORT)],
            labels={"app": "client"},
            host_users=None,
        ),
    )
    wait_for_phase(core, namespace, "client", {"Running"}, timeout=90)

    # Control: with no policy the Service answers (kube-proxy's DNAT works).
    seen = _wait_for_steady(core, namespace, 0, True, "the Service to answer without policy")

    net.create_namespaced_network_policy(
        namespace,
        _policy(
            "default-deny-egress",
            {
                "podSelector": {},
                "policyTypes": ["Egress"],
            },
        ),
    )
    seen = _wait_for_steady(core, namespace, seen, False, "default-deny egress to take effect")

    net.create_namespaced_network_policy(
        namespace,
        _policy(
            "client-to-server",
            {
                "podSelector": {"matchLabels": {"app": "client"}},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [{"podSelector": {"matchLabels": {"app": "server"}}}],
                        "ports": [{"protocol": "TCP", "port": SERVER_PORT}],
                    }
                ],
            },
        ),
    )
    _wait_for_steady(core, namespace, seen, True, "the allowing policy to take effect")
