"""Browser pods, their Secrets, claims and sessions as data: every isolation setting."""

from __future__ import annotations

import hashlib

import pytest
from browser_agent.protocol import SessionNetwork

from controller.kubernetes.browser_manifests import (
    AGENT_UID,
    TOKEN_ENV,
    agent_endpoint,
    browser_pod,
    browser_session,
    new_pod_name,
)
from controller.kubernetes.session_pods import (
    LABEL_POOL,
    LABEL_SESSION,
    claim_patch,
    owner_reference,
    secret_token,
    token_secret,
)
from controller.operator.settings import OperatorSettings
from sandbox_common.domains import DomainPolicy, parse_patterns

POOL = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "browser-pool", "uid": "u-pool"},
}
SESSION = {
    "apiVersion": "sandbox-controller.dev/v1",
    "kind": "BrowserSession",
    "metadata": {"name": "bs-0123456789abcdef0123", "uid": "u-session"},
}
TOKEN = "a-session-token-of-forty-three-characters-x"


def operator_settings(**overrides: object) -> OperatorSettings:
    return OperatorSettings.model_validate(overrides)


def warm_pod(**overrides: object) -> dict:  # type: ignore[type-arg]
    spec = operator_settings(**overrides).pod_spec()
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    return browser_pod(spec, new_pod_name(), digest, owner_reference(POOL))


def test_a_browser_pod_gets_nothing_of_the_cluster_and_runs_as_no_one() -> None:
    spec = warm_pod()["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    assert spec["hostUsers"] is False
    assert spec["restartPolicy"] == "Never"
    assert "hostNetwork" not in spec and "hostPID" not in spec and "hostIPC" not in spec
    assert all("hostPath" not in v for v in spec["volumes"])
    security = spec["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == AGENT_UID
    assert security["seccompProfile"] == {
        "type": "Localhost",
        "localhostProfile": "sandbox-controller/runner-seccomp.json",
    }
    (container,) = spec["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
    }
    assert spec["activeDeadlineSeconds"] >= 3600 + 7200  # a warm wait plus a whole session


def test_the_pod_spec_carries_the_tokens_digest_never_the_token() -> None:
    pod = warm_pod()
    (container,) = pod["spec"]["containers"]
    assert TOKEN not in str(pod)
    variables = {e["name"]: e["value"] for e in container["env"]}
    assert variables[TOKEN_ENV] == hashlib.sha256(TOKEN.encode()).hexdigest()
    assert container["command"][container["command"].index("--token-sha256-env") + 1] == TOKEN_ENV


def test_limits_bound_the_whole_pod() -> None:
    (container,) = warm_pod(browser_memory_mb=1536, browser_cpu_limit="2")["spec"]["containers"]
    limits = container["resources"]["limits"]
    assert limits == {"cpu": "2", "memory": "1536Mi", "ephemeral-storage": "512Mi"}
    assert container["resources"]["requests"]["memory"] == "1536Mi"  # never overcommitted


def test_chromiums_sandbox_and_private_networks_follow_the_settings() -> None:
    (default,) = warm_pod()["spec"]["containers"]
    assert "--no-chromium-sandbox" not in default["command"]
    assert "--allow-private-networks" not in default["command"]
    (relaxed,) = warm_pod(browser_chromium_sandbox=False, browser_allow_private_networks=True)[
        "spec"
    ]["containers"]
    assert {"--no-chromium-sandbox", "--allow-private-networks"} <= set(relaxed["command"])


def test_a_warm_pod_belongs_to_the_pool_and_a_cold_one_to_its_session() -> None:
    warm = warm_pod()
    assert warm["metadata"]["labels"][LABEL_POOL] == "warm"
    assert LABEL_SESSION not in warm["metadata"]["labels"]
    assert warm["metadata"]["ownerReferences"][0]["name"] == "browser-pool"
    spec = operator_settings().pod_spec()
    cold = browser_pod(spec, new_pod_name(), "00" * 32, owner_reference(SESSION), "bs-x")
    assert cold["metadata"]["labels"][LABEL_SESSION] == "bs-x"
    assert cold["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "sandbox-controller.dev/v1",
            "kind": "BrowserSession",
            "name": SESSION["metadata"]["name"],
            "uid": "u-session",
            "controller": True,
            "blockOwnerDeletion": False,
        }
    ]


def test_a_claim_is_a_compare_and_swap_on_the_pods_version() -> None:
    pod = warm_pod()
    pod["metadata"]["resourceVersion"] = "4711"
    patch = claim_patch(pod, SESSION)
    assert patch["metadata"]["resourceVersion"] == "4711"
    assert patch["metadata"]["labels"] == {
        LABEL_POOL: "claimed",
        LABEL_SESSION: SESSION["metadata"]["name"],
    }
    assert patch["metadata"]["ownerReferences"][0]["uid"] == "u-session"


def test_the_secret_holds_the_token_is_owned_by_its_pod_and_the_names_are_generated() -> None:
    pod = {**warm_pod(), "apiVersion": "v1", "kind": "Pod"}
    pod["metadata"] = {**pod["metadata"], "uid": "u-pod"}
    secret = token_secret(pod, TOKEN)
    assert secret["type"] == "Opaque" and secret["immutable"] is True
    assert secret["metadata"]["name"] == pod["metadata"]["name"]
    # Owned by the pod: whoever deletes the pod deletes the token, crash or not.
    assert [(o["kind"], o["uid"]) for o in secret["metadata"]["ownerReferences"]] == [
        ("Pod", "u-pod")
    ]
    assert secret_token(secret) == TOKEN
    names = {new_pod_name() for _ in range(50)}
    assert len(names) == 50 and all(n.startswith("brw-") and len(n) == 20 for n in names)


def test_a_session_keeps_the_callers_labels_and_its_network_in_its_spec() -> None:
    policy = DomainPolicy(parse_patterns(["*.a.test"]), parse_patterns(["x.a.test"]))
    network = SessionNetwork.of(policy, {"m.a.test": "10.0.0.1"}).model_dump()
    body = browser_session("bs-1", "mobile", 60, 600, {"caller": "agent 7"}, network, "team-a")
    assert body["metadata"]["labels"]["sandbox-controller.dev/key"] == "team-a"
    assert body["spec"] == {
        "device": "mobile",
        "idleTimeoutS": 60,
        "maxLifetimeS": 600,
        "labels": {"caller": "agent 7"},
        "network": {
            "allowedDomains": ["*.a.test"],
            "deniedDomains": ["x.a.test"],
            "allowedPorts": [80, 443],
            "internalHosts": {"m.a.test": "10.0.0.1"},
        },
    }
    # What the agent is given is what it reads back.
    assert SessionNetwork.model_validate(body["spec"]["network"]).policy() == policy
    assert "caller" not in body["metadata"]["labels"]


@pytest.mark.parametrize(
    ("ip", "url"), [("10.244.0.7", "http://10.244.0.7:8080"), ("fd00::7", "http://[fd00::7]:8080")]
)
def test_the_agents_endpoint(ip: str, url: str) -> None:
    assert agent_endpoint(ip) == url
