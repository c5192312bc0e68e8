"""What every kind of session resource shares, as pure builders: phases, claims, tokens.

A session (a BrowserSession, a CodeContext) is served by one pod of its own, taken
from a warm pool the operator keeps.  A warm pod is owned by its pool's ConfigMap;
claiming it hands its ownership to the session in one write that names the pod's
resourceVersion, so two sessions can never claim the same pod.  The pod's spec carries
only the SHA-256 of its token; the token itself is in a Secret named like the pod and
owned by it, which only the controller and the operator read.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from controller.kubernetes.manifests import APP, LABEL_COMPONENT, LABEL_MANAGED_BY

GROUP = "sandbox-controller.dev"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"

LABEL_POOL = "sandbox-controller.dev/pool"
LABEL_SESSION = "sandbox-controller.dev/session"
WARM = "warm"
CLAIMED = "claimed"
TOKEN_KEY = "token"  # noqa: S105 - the key's name in the Secret, not a secret

PENDING, READY, FAILED, EXPIRED = "Pending", "Ready", "Failed", "Expired"


@dataclass(frozen=True)
class CustomResource:
    """A kind of custom resource, as the API addresses it."""

    group: str
    version: str
    plural: str
    kind: str


PHASES = (PENDING, READY, FAILED, EXPIRED)


def pods_selector(component: str) -> str:
    """The label selector of one kind's pods."""
    return f"{LABEL_COMPONENT}={component},{LABEL_MANAGED_BY}={APP}"


def pool_labels(component: str, session: str | None) -> dict[str, str]:
    """A session pod's labels: warm (no session yet) or claimed by ``session``."""
    labels = {LABEL_COMPONENT: component, LABEL_MANAGED_BY: APP}
    labels[LABEL_POOL] = CLAIMED if session else WARM
    if session:
        labels[LABEL_SESSION] = session
    return labels


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_token() -> str:
    return secrets.token_urlsafe(32)


def owner_reference(obj: dict[str, Any], *, controller: bool = True) -> dict[str, Any]:
    """An ownerReference to ``obj`` (its apiVersion, kind, name and uid)."""
    meta = obj["metadata"]
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": controller,
        "blockOwnerDeletion": False,
    }


def token_secret(pod: dict[str, Any], token: str) -> dict[str, Any]:
    """The Secret holding one session pod's token, named like the pod and owned by it.

    Owned by the pod, not by the pod's owner: whoever deletes the pod (its session, the
    pool, a person, the garbage collector) deletes its token too, with no step of ours
    in between that a crash could skip.
    """
    component = pod["metadata"]["labels"][LABEL_COMPONENT]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "immutable": True,
        "metadata": {
            "name": pod["metadata"]["name"],
            "labels": {LABEL_COMPONENT: component, LABEL_MANAGED_BY: APP},
            "ownerReferences": [owner_reference(pod)],
        },
        "data": {TOKEN_KEY: base64.b64encode(token.encode()).decode()},
    }


def secret_token(secret: dict[str, Any]) -> str:
    """The token a Secret of ``token_secret`` holds."""
    return base64.b64decode(secret["data"][TOKEN_KEY]).decode()


def claim_patch(pod: dict[str, Any], session: dict[str, Any]) -> dict[str, Any]:
    """A merge patch giving a warm pod to a session, valid only on the pod as it was read.

    The resourceVersion makes the API server refuse (409) the patch if anything wrote
    the pod since: the claim is one compare-and-swap.
    """
    return {
        "metadata": {
            "resourceVersion": pod["metadata"]["resourceVersion"],
            "labels": {LABEL_POOL: CLAIMED, LABEL_SESSION: session["metadata"]["name"]},
            "ownerReferences": [owner_reference(session)],
        }
    }


def http_endpoint(pod_ip: str, port: int) -> str:
    host = f"[{pod_ip}]" if ":" in pod_ip else pod_ip
    return f"http://{host}:{port}"
