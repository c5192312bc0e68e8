"""What the sweep deletes, from what it listed: expired leases and the pods of gone replicas."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from controller.kubernetes.manifests import LABEL_OWNER
from controller.kubernetes.sweep import expired_leases, orphaned_pods, parse_time

NOW = datetime(2026, 12, 2, 5, 0, 0, tzinfo=UTC)


def lease(owner: str, renewed_ago_s: float | None, duration: int = 15) -> dict[str, Any]:
    spec: dict[str, Any] = {"leaseDurationSeconds": duration}
    if renewed_ago_s is not None:
        moment = NOW - timedelta(seconds=renewed_ago_s)
        spec["renewTime"] = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    created = (NOW - timedelta(seconds=3600)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "metadata": {
            "name": f"lease-{owner}",
            "labels": {LABEL_OWNER: owner},
            "creationTimestamp": created,
        },
        "spec": spec,
    }


def pod(name: str, owner: str | None) -> dict[str, Any]:
    labels = {LABEL_OWNER: owner} if owner else {}
    return {"metadata": {"name": name, "labels": labels}}


def test_times_as_the_api_server_writes_them() -> None:
    assert parse_time("2026-12-02T05:00:00.000001Z") == NOW + timedelta(microseconds=1)
    assert parse_time("2026-12-02T05:00:00Z") == NOW
    assert parse_time("yesterday") is None and parse_time(None) is None


def test_a_lease_expires_after_twice_its_duration_and_never_ones_own() -> None:
    leases = [
        lease("fresh", 10),
        lease("late-but-within-grace", 29),
        lease("gone", 31),
        lease("me", 1000),  # this replica's own: never deleted by itself
        lease("never-renewed", None),  # judged by its creation, an hour ago
        lease("broken", 5, duration=0),
    ]
    assert expired_leases(leases, NOW, own="me") == [
        "lease-gone",
        "lease-never-renewed",
        "lease-broken",
    ]


def test_pods_of_gone_replicas_and_unknown_pods_of_ones_own_are_orphans() -> None:
    leases = [lease("alive", 1), lease("gone", 100)]
    pods = [
        pod("p-alive", "alive"),
        pod("p-gone", "gone"),
        pod("p-unleased", "never-had-a-lease"),
        pod("p-unlabelled", None),
        pod("p-mine-known", "me"),
        pod("p-mine-unknown", "me"),
    ]
    doomed = orphaned_pods(pods, leases, NOW, own="me", known={"p-mine-known"})
    assert doomed == ["p-gone", "p-unleased", "p-unlabelled", "p-mine-unknown"]
