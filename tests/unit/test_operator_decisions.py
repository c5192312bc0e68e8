"""The operator's decisions as data: pod failures, the warm pool's plan, session reviews."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.kubernetes.context_manifests import LABEL_TEMPLATE
from controller.kubernetes.resources import (
    BrowserSessionResource,
    CodeContextResource,
    reported_idle_s,
)
from controller.kubernetes.session_pods import LABEL_POOL, LABEL_SESSION, format_time
from controller.operator import decisions
from controller.operator.decisions import Finish, Keep, PodTemplate, Remove
from controller.operator.kinds import ContextKind

NOW = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)


def stamp(seconds_ago: float) -> str:
    return format_time(NOW - timedelta(seconds=seconds_ago))


def pod(
    name: str,
    *,
    age_s: float = 10,
    phase: str = "Running",
    ip: str | None = "10.244.0.9",
    session: str | None = None,
    template: str = "v2",
    **status: Any,
) -> dict[str, Any]:
    labels = {LABEL_POOL: "claimed" if session else "warm", LABEL_TEMPLATE: template}
    if session:
        labels[LABEL_SESSION] = session
    return {
        "metadata": {"name": name, "labels": labels, "creationTimestamp": stamp(age_s)},
        "status": {"phase": phase, **({"podIP": ip} if ip else {}), **status},
    }


def terminated(reason: str, code: int) -> dict[str, Any]:
    return {"containerStatuses": [{"state": {"terminated": {"reason": reason, "exitCode": code}}}]}


@pytest.mark.parametrize(
    ("change", "event", "expected"),
    [
        ({}, "MODIFIED", None),
        ({}, "DELETED", "was deleted"),
        ({"metadata": {"deletionTimestamp": stamp(1)}}, "MODIFIED", "was deleted"),
        (
            {"status": {"phase": "Failed", **terminated("OOMKilled", 137)}},
            "MODIFIED",
            "ran out of memory",
        ),
        ({"status": {"phase": "Failed", **terminated("Error", 1)}}, "MODIFIED", "exit code 1"),
        (
            {"status": {"phase": "Failed", "reason": "DeadlineExceeded", "message": "too old"}},
            "MODIFIED",
            "DeadlineExceeded: too old",
        ),
        (
            {
                "status": {
                    "phase": "Pending",
                    "containerStatuses": [
                        {
                            "state": {
                                "waiting": {"reason": "ErrImageNeverPull", "message": "no image"}
                            }
                        }
                    ],
                }
            },
            "MODIFIED",
            "cannot start: ErrImageNeverPull: no image",
        ),
        (
            {
                "status": {
                    "phase": "Pending",
                    "containerStatuses": [{"state": {"waiting": {"reason": "ContainerCreating"}}}],
                }
            },
            "MODIFIED",
            None,
        ),
    ],
)
def test_why_a_pod_can_no_longer_serve(
    change: dict[str, Any], event: str, expected: str | None
) -> None:
    body = pod("brw-1")
    for key, value in change.items():
        body[key] = {**body[key], **value} if key == "metadata" else value
    failure = decisions.pod_failure(body, event, what="browser")
    if expected is None:
        assert failure is None
    else:
        assert failure is not None and expected in failure


def test_a_pod_has_an_address_only_while_it_runs() -> None:
    assert decisions.pod_address(pod("a")) == "10.244.0.9"
    assert decisions.pod_address(pod("a", phase="Pending")) is None
    assert decisions.pod_address(pod("a", ip=None)) is None


def plan_of(
    pods: list[dict[str, Any]], target: int, ready: set[str] | None = None
) -> decisions.PoolPlan:
    names = {p["metadata"]["name"] for p in pods}
    return decisions.pool_plan(
        pods,
        names if ready is None else ready,
        target,
        NOW,
        TEMPLATE,
        start_timeout_s=90,
        what="runner",
    )


TEMPLATE = PodTemplate(version="v2", warm_max_age_s=600, user_namespace=True)


def test_the_pool_is_filled_up_to_its_target() -> None:
    plan = plan_of([pod("a")], target=3)
    assert (plan.create, plan.remove) == (2, [])


def test_claimed_pods_do_not_count_as_warm() -> None:
    plan = plan_of([pod("a", session="bs-1")], target=1)
    assert (plan.create, plan.remove) == (1, [])


def test_failed_and_old_warm_pods_are_replaced() -> None:
    pods = [
        pod("failed", phase="Failed", **terminated("Error", 1)),
        pod("old", age_s=700),
        pod("fine"),
    ]
    plan = plan_of(pods, target=2)
    assert plan.create == 1
    assert plan.remove == ["failed", "old"]
    assert "warm for more than 600s" in plan.reasons["old"]


def test_warm_pods_made_from_another_template_are_replaced() -> None:
    # The settings changed (a new template published): the warm pods go, claimed ones stay.
    pods = [pod("stale", template="v1"), pod("unlabelled", template=""), pod("fresh")]
    pods.append(pod("claimed", template="v1", session="ctx-1"))
    plan = plan_of(pods, target=2)
    assert (plan.create, plan.remove) == (1, ["stale", "unlabelled"])
    assert "older template" in plan.reasons["stale"]


def test_a_warm_pod_whose_agent_never_answers_is_replaced() -> None:
    pods = [pod("mute", age_s=120), pod("young", age_s=30)]
    plan = plan_of(pods, target=2, ready=set())
    assert plan.remove == ["mute"]
    assert "did not answer within 90s" in plan.reasons["mute"]
    assert plan.create == 1


def test_a_pod_being_deleted_is_neither_kept_nor_deleted_again() -> None:
    going = pod("going")
    going["metadata"]["deletionTimestamp"] = stamp(1)
    plan = plan_of([going], target=1)
    assert (plan.create, plan.remove) == (1, [])


def test_a_smaller_pool_sheds_its_newest_pods() -> None:
    pods = [pod("oldest", age_s=30), pod("newest", age_s=1), pod("middle", age_s=10)]
    plan = plan_of(pods, target=1)
    assert (plan.create, plan.remove) == (0, ["middle", "newest"])


def session(
    phase: str | None = "Ready",
    *,
    age_s: float = 60,
    idle: int = 300,
    life: int = 1800,
    **status: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"name": "bs-1", "creationTimestamp": stamp(age_s)},
        "spec": {"device": "desktop", "idleTimeoutS": idle, "maxLifetimeS": life},
        "status": {"phase": phase, **status} if phase else {},
    }
    return body


ALIVE = pod("brw-1", session="bs-1")


def review(
    body: dict[str, Any],
    idle_s: float | None,
    pod: dict[str, Any] | None = ALIVE,
    usage: dict[str, Any] | None = None,
) -> decisions.Verdict:
    session = BrowserSessionResource.parse(body)
    return decisions.review(
        session,
        NOW,
        idle_s,
        retention_s=300,
        pod=pod,
        start_timeout_s=120,
        what="browser",
        usage=usage,
    )


def test_a_used_session_is_kept_and_its_last_use_recorded_once() -> None:
    verdict = review(session(lastUsedAt=stamp(30)), idle_s=2.0)
    assert verdict == Keep({"lastUsedAt": stamp(2)})
    again = review(session(lastUsedAt=stamp(9)), idle_s=2.0)
    assert again == Keep(None)  # within the resolution: no write
    # What the pod reports of its use besides rides on the same write.
    counted = review(session(lastUsedAt=stamp(30)), idle_s=2.0, usage={"calls": 3})
    assert counted == Keep({"lastUsedAt": stamp(2), "calls": 3})
    # Used in a burst (its last use recorded already): what changed is written once the
    # last write is old enough, and not again while nothing changes.
    burst = session(lastUsedAt=stamp(12), calls=1)
    assert review(burst, idle_s=12.0, usage={"calls": 3}) == Keep(
        {"lastUsedAt": stamp(12), "calls": 3}
    )
    assert review(session(lastUsedAt=stamp(12), calls=3), 12.0, usage={"calls": 3}) == Keep()
    assert review(session(lastUsedAt=stamp(9), calls=1), 9.0, usage={"calls": 4}) == Keep()


def test_an_idle_session_expires() -> None:
    verdict = review(session(idle=60), idle_s=60.5)
    assert isinstance(verdict, Finish)
    assert verdict.status["phase"] == "Expired"
    assert "unused for 60s" in verdict.status["reason"]
    assert verdict.status["endedAt"] == format_time(NOW)


def test_a_session_ends_with_its_lifetime_however_busy() -> None:
    verdict = review(session(age_s=1801, life=1800), idle_s=0.0)
    assert isinstance(verdict, Finish)
    assert "maximum lifetime of 1800s" in verdict.status["reason"]


def test_no_answer_from_the_agent_decides_nothing_before_the_lifetime() -> None:
    assert review(session(), idle_s=None) == Keep()


def test_finished_sessions_are_removed_after_their_retention() -> None:
    recent = session("Failed", endedAt=stamp(10), reason="pod deleted")
    assert review(recent, None) == Keep()
    old = session("Expired", endedAt=stamp(301))
    assert review(old, None) == Remove()


def test_a_pending_session_is_left_to_its_create_handler_until_its_deadline() -> None:
    assert review(session(None, age_s=60), idle_s=None) == Keep()
    late = review(session(None, age_s=121), idle_s=None)
    assert isinstance(late, Finish)
    assert late.status["phase"] == "Failed"
    assert "not ready within 120s" in late.status["reason"]


def test_a_session_whose_pod_is_gone_or_dead_fails_even_unwatched() -> None:
    gone = review(session(pod="brw-1"), idle_s=None, pod=None)
    assert isinstance(gone, Finish)
    assert gone.status["reason"] == "its browser pod brw-1 is gone"
    dead = review(
        session(pod="brw-1"),
        idle_s=None,
        pod=pod("brw-1", session="bs-1", phase="Failed", **terminated("OOMKilled", 137)),
    )
    assert isinstance(dead, Finish) and "out of memory" in dead.status["reason"]


def test_statuses_say_what_happened() -> None:
    configured = {
        "device": "mobile",
        "viewport": {"width": 412, "height": 839},
        "userAgent": "UA",
        "isMobile": True,
        "tabId": "t1",
    }
    ready = decisions.ready("brw-1", "http://10.244.0.9:8080", NOW, configured)
    assert ready["phase"] == "Ready" and ready["tokenSecret"] == "brw-1"
    assert ready["readyAt"] == ready["lastUsedAt"] == "2026-12-02T12:00:00.000Z"
    assert ready["device"] == "mobile" and ready["tabId"] == "t1"
    assert settled(ready)
    failed = decisions.ended("Failed", "the browser refused", NOW, {"status": 422})
    assert failed == {
        "phase": "Failed",
        "reason": "the browser refused",
        "endedAt": "2026-12-02T12:00:00.000Z",
        "error": {"status": 422},
    }
    assert not settled(decisions.pending("claiming"))
    assert settled(failed)


def settled(status: dict[str, Any]) -> bool:
    """Whether a session with this status is settled, as the create handler reads it."""
    return BrowserSessionResource.parse({"metadata": {"name": "bs-1"}, "status": status}).settled


@pytest.mark.parametrize(
    ("health", "expected"),
    [
        ({"idleS": 12}, 12.0),
        ({"idleS": 0.5}, 0.5),
        ({}, None),
        ({"idleS": "12"}, None),
        ({"idleS": True}, None),
        ({"idleS": -1}, None),
        ({"idleS": float("nan")}, None),
        ({"idleS": float("inf")}, None),
    ],
)
def test_only_a_plain_idle_figure_from_the_agent_counts(
    health: dict[str, Any], expected: float | None
) -> None:
    # The pod runs arbitrary pages: what it reports decides nothing unless well formed.
    assert reported_idle_s(health) == expected


CONTEXTS = ContextKind(
    namespace="sandbox-runners",
    pool_owner="context-pool",
    warm_pods=1,
    start_timeout_s=60,
    review_interval_s=2,
    retention_s=300,
)


@pytest.mark.parametrize(
    ("status", "idle_s", "recorded"),
    [
        ({"idleS": 7, "busy": False, "calls": 2, "restarts": 1}, 7.0, {"calls": 2, "restarts": 1}),
        # A call under way is use however long it runs: the runner's clock counts from
        # the end of its last operation, and would idle out a long call.
        ({"idleS": 900, "busy": True, "calls": 2}, 0.0, {"calls": 2}),
        # Not set up yet: unused since it was Ready (20 s ago), not since the warm pod
        # started (the runner's clock).
        ({"begun": False, "idleS": 3000}, 20.0, {}),
        # The code in the pod may have taken the runner over: nonsense records nothing.
        ({"idleS": 1, "calls": -1, "restarts": True}, 1.0, {}),
        ({"idleS": 1, "calls": "3", "restarts": 2**60}, 1.0, {}),
    ],
)
def test_a_context_runner_reports_its_use(
    status: dict[str, Any], idle_s: float, recorded: dict[str, int]
) -> None:
    ready = CodeContextResource.parse(
        {"metadata": {"name": "ctx-1"}, "status": {"phase": "Ready", "readyAt": stamp(20)}}
    )
    usage = CONTEXTS.usage({"begun": True} | status, ready, NOW)
    assert (usage.idle_s, usage.status) == (idle_s, recorded)


def test_a_context_never_set_up_fails_at_its_setup_deadline() -> None:
    """Its controller went away between Ready and the setup: it fails, rather than hold
    a pod (and count against its key) until its idle timeout."""

    def ready(seconds_ago: float) -> CodeContextResource:
        status = {"phase": "Ready", "readyAt": stamp(seconds_ago), "pod": "ctx-9"}
        return CodeContextResource.parse({"metadata": {"name": "ctx-1"}, "status": status})

    waiting = CONTEXTS.usage({"begun": False, "idleS": 5000}, ready(60), NOW)
    assert (waiting.idle_s, waiting.failure) == (60.0, None)
    setting_up = CONTEXTS.usage({"begun": False, "busy": True}, ready(600), NOW)
    assert (setting_up.idle_s, setting_up.failure) == (0.0, None)
    orphaned = CONTEXTS.usage({"begun": False}, ready(121), NOW)
    assert orphaned.failure is not None and "not set up" in orphaned.failure
    verdict = decisions.review(
        ready(121),
        NOW,
        orphaned.idle_s,
        retention_s=300,
        pod=pod("ctx-9", session="ctx-1"),
        start_timeout_s=120,
        what="runner",
        failure=orphaned.failure,
    )
    assert isinstance(verdict, Finish) and verdict.status["phase"] == "Failed"


def test_a_context_records_what_its_runner_did() -> None:
    body = {
        "metadata": {"name": "ctx-1", "labels": {"sandbox-controller.dev/key": "team-a"}},
        "spec": {"idleTimeoutS": 60, "maxLifetimeS": 600, "labels": {"a": "b"}},
        "status": {"phase": "Ready", "calls": 3, "restarts": "x", "pod": "ctx-9"},
    }
    context = CodeContextResource.parse(body)
    assert (context.owner, context.status.calls, context.status.restarts) == ("team-a", 3, 0)
    later = context.with_status({"calls": 4})
    assert isinstance(later, CodeContextResource) and later.status.calls == 4
    assert later.status.pod == "ctx-9"
