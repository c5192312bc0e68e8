"""What the sweep removes, decided as pure functions of what it listed (tested as data).

Every replica renews a Lease in the sandbox namespace and owns its runner pods through
it.  A replica that is gone (deleted, OOM-killed, its node lost) stops renewing; once its
lease is overdue by a whole lease duration more, any replica's sweep deletes the lease
(the garbage collector then removes the pods it owns) and deletes those pods itself
too, so cleanup does not depend on the collector's pace.  A pod of this replica that it
no longer knows (left by a start that failed half-way) goes the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from controller.kubernetes.manifests import LABEL_OWNER


def parse_time(value: object) -> datetime | None:
    """A MicroTime or Time (``...Z``) as the API server writes it; None if it is not one."""
    if not isinstance(value, str):
        return None
    for layout in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(value, layout).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def _owner(obj: dict[str, Any]) -> str | None:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    owner = labels.get(LABEL_OWNER)
    return owner if isinstance(owner, str) else None


def _name(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def lease_expired(lease: dict[str, Any], now: datetime) -> bool:
    """Overdue by its own duration once more (room for clock skew between replicas)."""
    spec = lease.get("spec") or {}
    renewed = parse_time(spec.get("renewTime"))
    duration = spec.get("leaseDurationSeconds")
    if renewed is None or not isinstance(duration, int) or duration <= 0:
        created = parse_time((lease.get("metadata") or {}).get("creationTimestamp"))
        renewed, duration = created, 60  # never renewed: judged by its age
    if renewed is None:
        return True
    return now - renewed > timedelta(seconds=2 * duration)


def expired_leases(leases: Iterable[dict[str, Any]], now: datetime, own: str) -> list[str]:
    """Names of the leases to delete: overdue, and never this replica's own."""
    return [_name(x) for x in leases if _owner(x) != own and lease_expired(x, now)]


def orphaned_pods(
    pods: Iterable[dict[str, Any]],
    leases: Iterable[dict[str, Any]],
    now: datetime,
    own: str,
    known: set[str],
) -> list[str]:
    """Names of runner pods whose replica is gone, and of this replica's it does not know."""
    alive = {_owner(x) for x in leases if not lease_expired(x, now)}
    alive.add(own)
    doomed = []
    for pod in pods:
        owner, name = _owner(pod), _name(pod)
        if owner not in alive or (owner == own and name not in known):
            doomed.append(name)
    return doomed
