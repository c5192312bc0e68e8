"""What the controller makes of a CodeContext and of its runner pod's answers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
import pytest
from runner.contract import (
    CallOutcome,
    ContextFailed,
    Event,
    FileRefused,
    Outcome,
    OutputChunk,
    RunLimits,
)
from runner.wire import Failure, encode_call, encode_event, encode_failure

from controller.contexts.placement import ContextCall
from controller.errors import Busy, NotFound, SandboxUnavailable
from controller.keys import Defaults
from controller.kubernetes.api import KubeApi
from controller.kubernetes.contexts import (
    KubernetesContexts,
    RemoteContext,
    RunnerUnreachable,
    context_info,
    listing,
)
from controller.kubernetes.resources import CodeContextResource
from controller.settings import Settings

NOW = datetime.now(UTC).replace(microsecond=0)
BODY = {
    "metadata": {
        "name": "ctx-0123456789abcdef0123",
        "creationTimestamp": (NOW - timedelta(seconds=100)).isoformat(),
        "labels": {"sandbox-controller.dev/key": "default"},
    },
    "spec": {
        "idleTimeoutS": 60,
        "maxLifetimeS": 600,
        "labels": {"who": "a"},
        "network": {"allowedDomains": ["pypi.org", "*.example.org"]},
    },
    "status": {
        "phase": "Ready",
        "calls": 4,
        "lastUsedAt": (NOW - timedelta(seconds=30)).isoformat(),
    },
}


def test_the_record_comes_from_the_resource_and_from_the_runner_when_asked() -> None:
    context = CodeContextResource.parse(BODY)
    recorded = context_info(context)
    assert (recorded.calls, recorded.busy, recorded.labels) == (4, False, {"who": "a"})
    assert recorded.allowedDomains == ["pypi.org", "*.example.org"]
    assert recorded.expiresAt == NOW + timedelta(seconds=30)  # last use + idle timeout
    live = context_info(context, {"calls": 6, "restarts": 1, "busy": False, "idleS": 2})
    assert (live.calls, live.restarts) == (6, 1)
    assert context_info(context, {"calls": 0}).calls == 0  # the runner's word, even 0
    # Used 2 s ago, as the runner says: later than the operator last recorded.
    since = datetime.now(UTC) - live.lastUsedAt
    assert timedelta(seconds=2) <= since < timedelta(seconds=5)
    # A call under way holds it open: only its lifetime ends it then.
    busy = context_info(context, {"busy": True, "calls": "x"})
    assert busy.busy is True and busy.calls == 4
    assert busy.expiresAt == context.created + timedelta(seconds=600)


class NoApi:
    """An API server that must not be asked."""

    async def read_custom(self, resource: Any, name: str) -> dict[str, Any]:
        raise AssertionError(f"asked for {name}")

    async def delete_custom(self, resource: Any, name: str) -> bool:
        raise AssertionError(f"asked to delete {name}")


@pytest.mark.parametrize("context_id", ["..", "ctx-1", "CTX-" + "a" * 20, "x" * 300])
async def test_what_cannot_be_a_context_id_is_a_404_without_asking_the_api_server(
    context_id: str,
) -> None:
    settings = Settings(_env_file=None, auth_token="a" * 32)  # type: ignore[call-arg]
    contexts = KubernetesContexts(settings, cast(KubeApi, NoApi()))
    caller = Defaults(4, 32, 4).caller()
    with pytest.raises(NotFound):
        await contexts.info(context_id, caller)
    with pytest.raises(NotFound):
        await contexts.close(context_id, caller)
    with pytest.raises(NotFound):
        async with contexts.operating(context_id, caller):
            pass


def runner(answer: httpx.Response | Exception) -> RemoteContext:
    def handle(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer t0ken"
        if isinstance(answer, Exception):
            raise answer
        return answer

    http = httpx.AsyncClient(transport=httpx.MockTransport(handle))
    return RemoteContext(http, "http://10.244.0.9:8080", "t0ken", "ctx-1")


def refusal(status: int, code: str | None, message: str = "no") -> httpx.Response:
    body: dict[str, Any] = {"message": message} | ({"error": code} if code else {})
    return httpx.Response(status, content=json.dumps(body).encode())


@pytest.mark.parametrize(
    ("answer", "raised", "rule"),
    [
        (refusal(409, "busy"), Busy, None),
        (refusal(503, None, "the context failed: it ended"), ContextFailed, None),
        (refusal(404, "not_found"), FileRefused, "not_found"),
        (refusal(422, "not_possible", "Permission denied"), FileRefused, "not_possible"),
        (refusal(401, None), SandboxUnavailable, None),
        (httpx.Response(200, content=b"x" * 100), FileRefused, "max_bytes"),
        (refusal(422, "busy"), SandboxUnavailable, None),  # the protocol's, not a rule
        (refusal(422, "Not A Rule!"), SandboxUnavailable, None),
        (httpx.ConnectError("refused"), RunnerUnreachable, None),
        (httpx.ReadError("reset"), RunnerUnreachable, None),
    ],
)
async def test_a_runners_answers_are_the_contexts_errors(
    answer: httpx.Response | Exception, raised: type[Exception], rule: str | None
) -> None:
    with pytest.raises(raised) as caught:
        await runner(answer).read_file("f.txt", 10)
    if rule is not None:
        assert isinstance(caught.value, FileRefused) and caught.value.rule == rule


async def test_a_call_is_read_by_the_wire_contract() -> None:
    outcome = Outcome(0, None, False, b"42\n", b"", False, False, 1.5)
    answered = runner(
        httpx.Response(200, content=encode_call("call-1", CallOutcome(outcome, True)))
    )
    the_call = ContextCall("print(42)", None, RunLimits(timeout_ms=1000), 200, "call-1")
    assert await answered.run(the_call) == CallOutcome(outcome, True)
    other = runner(httpx.Response(200, content=encode_call("call-2", CallOutcome(outcome, False))))
    with pytest.raises(SandboxUnavailable, match="nonsense"):
        await other.run(the_call)


async def test_a_calls_events_come_before_its_outcome_and_a_failure_is_the_contexts() -> None:
    outcome = Outcome(0, None, False, b"42\n", b"", False, False, 1.5)
    chunk = OutputChunk("stdout", b"42\n", 1.0)
    streamed = encode_event(chunk) + b"\n" + encode_call("call-1", CallOutcome(outcome, False))
    the_call = ContextCall("print(42)", None, RunLimits(timeout_ms=1000), 200, "call-1")
    seen: list[Event] = []
    assert await runner(httpx.Response(200, content=streamed)).run(the_call, seen.append)
    assert seen == [chunk]
    failed = encode_failure("call-1", Failure("context_failed", "the context failed: gone"))
    with pytest.raises(ContextFailed, match="gone"):
        await runner(httpx.Response(200, content=failed)).run(the_call)


@pytest.mark.parametrize(
    "answer",
    [
        refusal(422, "not_found"),  # a file's rule, from an operation on no file
        refusal(404, "path_protected"),
        httpx.Response(200, content=b"x" * (64 * 1024 + 1)),  # a status that large
    ],
)
async def test_only_a_file_operation_is_refused_as_a_file(answer: httpx.Response) -> None:
    """What the pod answers a call, a restart or a listing with is never a file's 404 or
    422 (the code may have taken the pod over): it is the platform's 503."""
    with pytest.raises(SandboxUnavailable):
        await runner(answer).restart()
    with pytest.raises(SandboxUnavailable):
        await runner(answer).request("GET", "/status")


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        # 20 entries where 3 were asked for: refused before parsing (each empty object
        # would cost the controller ~100 bytes of memory for its 3).
        (b'{"files": [' + b",".join([b"{}"] * 20) + b'], "complete": true}', "more files"),
        (b'{"files": [' + b",".join([b"[]"] * 20) + b'], "complete": true}', "more files"),
        # Brackets and braces in the paths are the paths'.
        (b'{"files": [{"path": "a", "size": Infinity}], "complete": true}', "nonsense"),
        (b'{"files": [{"path": "a", "size": -1}], "complete": true}', "nonsense"),
        (b'{"files": [{"path": "", "size": 1}], "complete": true}', "nonsense"),
        (b'{"files": [{"path": 7, "size": 1}], "complete": true}', "nonsense"),
        (b'{"files": [{"path": "a", "size": 1.5}], "complete": true}', "nonsense"),
    ],
)
def test_a_listing_is_read_strictly_and_within_its_bounds(raw: bytes, why: str) -> None:
    with pytest.raises(SandboxUnavailable, match=why):
        listing(raw, 3)


def test_a_listing_says_when_it_is_not_whole() -> None:
    raw = b'{"files": [{"path": "a", "size": 1}, {"path": "b/c", "size": 0}], "complete": true}'
    assert listing(raw, 2) == ([("a", 1), ("b/c", 0)], True)
    odd = b'{"files": [{"path": "[{\\"x\\" ]]{", "size": 3}], "complete": true}'
    assert listing(odd, 1) == ([('[{"x" ]]{', 3)], True)
    assert listing(raw.replace(b"true", b"false"), 2) == ([("a", 1), ("b/c", 0)], False)
