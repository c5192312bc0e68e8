"""What the operator decides, as pure functions of the resources it sees and the clock.

The handlers (controller.operator.handlers) only read, call these, and write what they
return, so every decision is tested as data: why a pod can no longer serve, what a
review of a session concludes, how the warm pool must change, and each status written.
Every kind of session is judged alike; ``what`` names what runs in its pods ("browser",
"runner") in the reasons given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from controller.kubernetes.context_manifests import LABEL_TEMPLATE
from controller.kubernetes.resources import SessionResource
from controller.kubernetes.session_pods import (
    EXPIRED,
    FAILED,
    LABEL_POOL,
    LABEL_SESSION,
    PENDING,
    READY,
    WARM,
    format_time,
    parse_time,
)

LAST_USED_RESOLUTION_S = 10.0
"""lastUsedAt is rewritten only when it moved at least this much, and what the pod reports
of its use besides (a context's calls) only when it changed and the last write is this
old: an active session costs one status write per this many seconds, not one per call
(nor one per review)."""


# --- pods ---------------------------------------------------------------------------------

WAITING_FAILURES = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "ErrImageNeverPull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)


def pod_failure(pod: dict[str, Any], event_type: str = "MODIFIED", *, what: str) -> str | None:
    """Why this pod can no longer serve a session, or None while it can."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    if event_type == "DELETED" or meta.get("deletionTimestamp"):
        return f"its {what} pod {meta.get('name')} was deleted"
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        terminated = state.get("terminated")
        if terminated:
            reason = terminated.get("reason") or "terminated"
            if reason == "OOMKilled":
                return f"the {what} ran out of memory (OOMKilled: the pod's memory limit)"
            return f"the {what} exited ({reason}, exit code {terminated.get('exitCode')})"
        waiting = state.get("waiting") or {}
        if waiting.get("reason") in WAITING_FAILURES:
            detail = waiting.get("message", "")
            return f"the {what} pod cannot start: {waiting['reason']}: {detail}"
    if status.get("phase") in ("Failed", "Succeeded"):
        why = status.get("reason") or status.get("phase")
        message = status.get("message")
        return f"its {what} pod ended ({why}{': ' + message if message else ''})"
    return None


def pod_address(pod: dict[str, Any]) -> str | None:
    """The pod's IP once it runs, else None."""
    status = pod.get("status") or {}
    if status.get("phase") != "Running":
        return None
    ip = status.get("podIP")
    return ip if isinstance(ip, str) and ip else None


def session_of(pod: dict[str, Any]) -> str | None:
    return ((pod.get("metadata") or {}).get("labels") or {}).get(LABEL_SESSION)


def is_warm(pod: dict[str, Any]) -> bool:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return labels.get(LABEL_POOL) == WARM and LABEL_SESSION not in labels


def made_from(pod: dict[str, Any]) -> str:
    """The version of the template the pod was made from ("" for none)."""
    return str(((pod.get("metadata") or {}).get("labels") or {}).get(LABEL_TEMPLATE, ""))


def created_at(obj: dict[str, Any]) -> datetime | None:
    return parse_time((obj.get("metadata") or {}).get("creationTimestamp"))


@dataclass(frozen=True)
class PodTemplate:
    """How one kind's pods are made now (``version`` labels them: a warm pod of another
    version is stale and replaced)."""

    version: str
    warm_max_age_s: int
    user_namespace: bool
    """Its pods ask for a user namespace (hostUsers: false): the API server must keep it."""


@dataclass(frozen=True)
class PoolPlan:
    create: int
    remove: list[str] = field(default_factory=list)
    """Warm pods to delete, each with why."""
    reasons: dict[str, str] = field(default_factory=dict)


def pool_plan(
    pods: list[dict[str, Any]],
    ready: set[str],
    target: int,
    now: datetime,
    template: PodTemplate,
    start_timeout_s: float,
    *,
    what: str,
) -> PoolPlan:
    """How many warm pods to start and which to delete, to keep ``target`` usable ones.

    A warm pod that failed, was made from another template, has waited longer than the
    template's ``warm_max_age_s``, or never answered within ``start_timeout_s`` is
    replaced; pods beyond the target (the setting was lowered) go, newest first.
    """
    keep: list[dict[str, Any]] = []
    reasons: dict[str, str] = {}
    max_age_s = template.warm_max_age_s
    for pod in pods:
        if not is_warm(pod):
            continue
        name = pod["metadata"]["name"]
        failure = pod_failure(pod, what=what)
        born = created_at(pod)
        age_s = (now - born).total_seconds() if born is not None else 0.0
        if failure is not None:
            if not pod["metadata"].get("deletionTimestamp"):
                reasons[name] = failure
        elif made_from(pod) != template.version:
            reasons[name] = "made from an older template (the settings changed)"
        elif age_s > max_age_s:
            reasons[name] = f"warm for more than {max_age_s}s"
        elif name not in ready and age_s > start_timeout_s:
            reasons[name] = f"its agent did not answer within {start_timeout_s:.0f}s"
        else:
            keep.append(pod)
    keep.sort(key=lambda pod: created_at(pod) or now)
    for extra in keep[target:]:
        reasons[extra["metadata"]["name"]] = "beyond the pool's size"
    usable = min(len(keep), target)
    return PoolPlan(create=max(target - usable, 0), remove=sorted(reasons), reasons=reasons)


# --- sessions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Keep:
    status: dict[str, Any] | None = None
    """A status update to write (lastUsedAt moved), or None: nothing to write."""


@dataclass(frozen=True)
class Finish:
    """The session ends (Expired, or Failed): its pod goes now, the resource after the
    retention."""

    status: dict[str, Any]


@dataclass(frozen=True)
class Remove:
    """The finished session's retention is over: delete the resource."""


Verdict = Keep | Finish | Remove


def review(
    session: SessionResource,
    now: datetime,
    idle_s: float | None,
    retention_s: int,
    pod: dict[str, Any] | None,
    start_timeout_s: float,
    *,
    what: str,
    usage: dict[str, Any] | None = None,
    failure: str | None = None,
) -> Verdict:
    """One periodic look at a session.

    ``idle_s`` is what its pod reports (None: no answer); ``pod`` is its pod as the
    operator last saw it (None: there is none), which catches a pod that died while
    nobody watched.  ``usage``: what the pod reports of its use besides, recorded in
    the status with lastUsedAt; ``failure``: why its report says it cannot be used.
    """
    status, phase = session.status, session.phase
    if phase in (FAILED, EXPIRED):
        ended_at = status.ended_at or now
        return Remove() if (now - ended_at).total_seconds() >= retention_s else Keep()
    created, idle_timeout = session.created, session.idle_timeout_s
    lifetime = session.max_lifetime_s
    if phase != READY:
        if (now - created).total_seconds() > start_timeout_s:
            return Finish(ended(FAILED, f"not ready within {start_timeout_s:.0f}s", now))
        return Keep()
    if failure is None:
        failure = (
            f"its {what} pod {status.pod} is gone" if pod is None else pod_failure(pod, what=what)
        )
    if failure is not None:
        return Finish(ended(FAILED, failure, now))
    if now >= created + timedelta(seconds=lifetime):
        return Finish(ended(EXPIRED, f"its maximum lifetime of {lifetime}s ended", now))
    if idle_s is None:
        return Keep()
    if idle_s >= idle_timeout:
        return Finish(ended(EXPIRED, f"unused for {idle_timeout}s (idleTimeoutS)", now))
    used = now - timedelta(seconds=idle_s)
    recorded = status.last_used_at
    usage = usage or {}
    if recorded is not None and abs((used - recorded).total_seconds()) < LAST_USED_RESOLUTION_S:
        written = session.body.get("status") or {}
        changed = any(written.get(name) != value for name, value in usage.items())
        if not changed or (now - recorded).total_seconds() < LAST_USED_RESOLUTION_S:
            return Keep()
    return Keep({"lastUsedAt": format_time(used), **usage})


def ended(
    phase: str, reason: str, now: datetime, error: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The status of a session that ended (Failed or Expired), saying why."""
    status: dict[str, Any] = {"phase": phase, "reason": reason, "endedAt": format_time(now)}
    if error is not None:
        status["error"] = error
    return status


def pending(reason: str) -> dict[str, Any]:
    return {"phase": PENDING, "reason": reason}


def ready(pod: str, endpoint: str, now: datetime, described: dict[str, Any]) -> dict[str, Any]:
    """The status of a session whose pod is ready for it: where it is, and what its
    kind describes of it (a browser's device, viewport and user agent)."""
    return {
        "phase": READY,
        "reason": "",
        "pod": pod,
        "endpoint": endpoint,
        "tokenSecret": pod,
        **described,
        "readyAt": format_time(now),
        "lastUsedAt": format_time(now),
    }
