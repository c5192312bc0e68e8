"""What the operator decides, as pure functions of the resources it sees and the clock.

The handlers (controller.operator.handlers) only read, call these, and write what they
return, so every decision is tested as data: why a pod can no longer serve, what a
review of a session concludes, how the warm pool must change, and each status written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from controller.kubernetes.browser_manifests import (
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
from controller.kubernetes.resources import BrowserSessionResource

LAST_USED_RESOLUTION_S = 10.0
"""lastUsedAt is rewritten only when it moved at least this much: an active session costs
one status write per this many seconds, not one per call (nor one per review)."""


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


def pod_failure(pod: dict[str, Any], event_type: str = "MODIFIED") -> str | None:
    """Why this browser pod can no longer serve a session, or None while it can."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    if event_type == "DELETED" or meta.get("deletionTimestamp"):
        return f"its browser pod {meta.get('name')} was deleted"
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        terminated = state.get("terminated")
        if terminated:
            reason = terminated.get("reason") or "terminated"
            if reason == "OOMKilled":
                return "the browser ran out of memory (OOMKilled: the pod's memory limit)"
            return f"the browser exited ({reason}, exit code {terminated.get('exitCode')})"
        waiting = state.get("waiting") or {}
        if waiting.get("reason") in WAITING_FAILURES:
            detail = waiting.get("message", "")
            return f"the browser pod cannot start: {waiting['reason']}: {detail}"
    if status.get("phase") in ("Failed", "Succeeded"):
        why = status.get("reason") or status.get("phase")
        message = status.get("message")
        return f"its browser pod ended ({why}{': ' + message if message else ''})"
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


def created_at(obj: dict[str, Any]) -> datetime | None:
    return parse_time((obj.get("metadata") or {}).get("creationTimestamp"))


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
    max_age_s: int,
    start_timeout_s: float,
) -> PoolPlan:
    """How many warm pods to start and which to delete, to keep ``target`` usable ones.

    A warm pod that failed, has waited longer than ``max_age_s``, or never answered
    within ``start_timeout_s`` is replaced; pods beyond the target (the setting was
    lowered) go, newest first.
    """
    keep: list[dict[str, Any]] = []
    reasons: dict[str, str] = {}
    for pod in pods:
        if not is_warm(pod):
            continue
        name = pod["metadata"]["name"]
        failure = pod_failure(pod)
        born = created_at(pod)
        age_s = (now - born).total_seconds() if born is not None else 0.0
        if failure is not None:
            if not pod["metadata"].get("deletionTimestamp"):
                reasons[name] = failure
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
    session: BrowserSessionResource,
    now: datetime,
    idle_s: float | None,
    retention_s: int,
    pod: dict[str, Any] | None,
    start_timeout_s: float,
) -> Verdict:
    """One periodic look at a session.

    ``idle_s`` is what its agent reports (None: no answer); ``pod`` is its pod as the
    operator last saw it (None: there is none), which catches a pod that died while
    nobody watched.
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
    failure = f"its browser pod {status.pod} is gone" if pod is None else pod_failure(pod)
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
    if recorded is not None and abs((used - recorded).total_seconds()) < LAST_USED_RESOLUTION_S:
        return Keep()
    return Keep({"lastUsedAt": format_time(used)})


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


def ready(pod: str, endpoint: str, configured: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The status of a session whose browser is configured: where it is and what it is."""
    return {
        "phase": READY,
        "reason": "",
        "pod": pod,
        "endpoint": endpoint,
        "tokenSecret": pod,
        "device": configured["device"],
        "viewport": configured.get("viewport"),
        "userAgent": configured["userAgent"],
        "isMobile": bool(configured["isMobile"]),
        "tabId": configured["tabId"],
        "readyAt": format_time(now),
        "lastUsedAt": format_time(now),
    }


def reported_idle_s(health: dict[str, Any]) -> float | None:
    """The agent's ``idleS`` from its /health reply; None unless a finite count >= 0.

    The pod runs arbitrary pages, so it may claim anything: a malformed figure decides
    nothing (the lifetime still bounds the session), and none can make it expire early.
    """
    idle = health.get("idleS")
    if isinstance(idle, bool) or not isinstance(idle, int | float):
        return None
    return float(idle) if math.isfinite(idle) and idle >= 0 else None
