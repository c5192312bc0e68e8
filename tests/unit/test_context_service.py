"""The context service's rules over a fake placement (the real one: tests/integration)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from runner.contract import (
    CallOutcome,
    ContextFailed,
    EventSink,
    FileRefused,
    Outcome,
    RunLimits,
)

from controller.budget import MemoryBudget
from controller.contexts.models import ContextExecuteRequest, CreateContextRequest
from controller.contexts.placement import ContextCall, ContextSpec, LiveContext
from controller.contexts.service import ContextService
from controller.contexts.sessions import LocalContextSessions
from controller.errors import Busy, Gone, InvalidRequest, NotFound, Overloaded, SandboxUnavailable
from controller.execution.backend import SandboxCheck
from controller.keys import Caller
from controller.metrics import Metrics
from controller.settings import Settings

A = Caller("a", 1, 1, 1, max_contexts=2)
B = Caller("b", 1, 1, 1, max_contexts=2)
OK = SandboxCheck(ok=True, detail="verified")


def outcome(**fields: Any) -> Outcome:
    base: dict[str, Any] = {
        "exit_code": 0,
        "signal": None,
        "timed_out": False,
        "stdout": b"",
        "stderr": b"",
        "stdout_truncated": False,
        "stderr_truncated": False,
        "duration_ms": 1.0,
    }
    return Outcome(**{**base, **fields})


class FakeContext:
    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.hold = False
        self.fail: Exception | None = None
        self.files: dict[str, bytes] = {}
        self.calls: list[tuple[str, RunLimits, int]] = []
        self.started = asyncio.Event()
        self.interrupted = False

    async def run(self, call: ContextCall, events: EventSink | None = None) -> CallOutcome:
        self.calls.append((call.code, call.limits, call.grace_ms))
        self.started.set()
        if self.hold:
            await self.release.wait()
        if self.fail is not None:
            raise self.fail
        code = call.code
        return CallOutcome(outcome(stdout=code.encode()), restarted=code == "restart me")

    async def interrupt(self, call_id: str) -> None:
        self.interrupted = True
        self.release.set()  # a held call stops, as code does on KeyboardInterrupt

    async def restart(self) -> None:
        pass

    async def list_files(self, max_entries: int) -> tuple[list[tuple[str, int]], bool]:
        return [(p, len(d)) for p, d in self.files.items()][:max_entries], True

    async def read_file(self, path: str, max_bytes: int) -> bytes:
        if path not in self.files:
            raise FileRefused("not_found", f"no file {path!r}")
        if len(self.files[path]) > max_bytes:
            raise FileRefused("max_bytes", "too big")
        return self.files[path]

    async def write_file(self, path: str, data: bytes) -> None:
        self.files[path] = data

    async def delete(self, path: str) -> None:
        self.files.pop(path)


class FakePlacement:
    name = "fake"

    def __init__(self) -> None:
        self.opened: list[tuple[ContextSpec, FakeContext]] = []
        self.closed: list[FakeContext] = []
        self.refuse: Exception | None = None

    async def open(self, spec: ContextSpec, caller: str) -> LiveContext:
        if self.refuse is not None:
            raise self.refuse
        context = FakeContext()
        self.opened.append((spec, context))
        return context

    async def close(self, context: LiveContext) -> None:
        assert isinstance(context, FakeContext)
        self.closed.append(context)
        context.fail = ContextFailed("the context's sandbox ended")  # as a killed one does
        context.release.set()


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, auth_token="a" * 32, **values)  # type: ignore[call-arg]


def service(
    placement: FakePlacement,
    budget: MemoryBudget | None = None,
    check: SandboxCheck = OK,
    **values: Any,
) -> ContextService:
    configured = settings(**values)
    metrics = Metrics()
    sessions = LocalContextSessions(configured, placement, budget, metrics)
    return ContextService(configured, sessions, lambda: check, metrics)


CREATE = CreateContextRequest.model_validate({})


def call(code: str) -> ContextExecuteRequest:
    return ContextExecuteRequest.model_validate({"code": code})


async def test_a_context_is_its_creators_alone() -> None:
    placement = FakePlacement()
    contexts = service(placement)
    info = await contexts.create(CREATE, A)
    assert info.contextId.startswith("ctx-")
    for attempt in (
        contexts.execute(info.contextId, call("1"), B),
        contexts.read_file(info.contextId, "x", B),
        contexts.delete(info.contextId, B),
        contexts.restart(info.contextId, B),
    ):
        with pytest.raises(NotFound):
            await attempt
    assert contexts.list(B) == [] and [c.contextId for c in contexts.list(A)] == [info.contextId]
    assert placement.closed == []


async def test_a_call_answers_as_execute_does_and_says_if_it_restarted() -> None:
    placement = FakePlacement()
    contexts = service(placement, default_timeout_ms=1234, context_interrupt_grace_ms=50)
    context_id = (await contexts.create(CREATE, A)).contextId
    first = await contexts.execute(context_id, call("print(1)"), A)
    assert (first.exitCode, first.stdout, first.restarted) == (0, "print(1)", False)
    assert first.executionId.startswith("ex-")
    second = await contexts.execute(context_id, call("restart me"), A)
    assert second.restarted is True
    _, limits, grace = placement.opened[0][1].calls[0]
    assert (limits.timeout_ms, grace) == (1234, 50)
    info = await contexts.info(context_id, A)
    assert (info.calls, info.restarts) == (2, 1)


async def test_a_second_operation_while_one_runs_is_busy() -> None:
    placement = FakePlacement()
    contexts = service(placement)
    context_id = (await contexts.create(CREATE, A)).contextId
    live = placement.opened[0][1]
    live.hold = True
    first = asyncio.create_task(contexts.execute(context_id, call("x"), A))
    await asyncio.wait_for(live.started.wait(), 5)
    assert (await contexts.info(context_id, A)).busy is True
    with pytest.raises(Busy, match="one at a time"):
        await contexts.execute(context_id, call("y"), A)
    with pytest.raises(Busy):
        await contexts.list_files(context_id, A)
    live.release.set()
    assert (await first).stdout == "x"
    assert (await contexts.info(context_id, A)).busy is False


async def test_a_call_on_a_context_deleted_meanwhile_is_gone() -> None:
    placement = FakePlacement()
    contexts = service(placement)
    context_id = (await contexts.create(CREATE, A)).contextId
    live = placement.opened[0][1]
    live.hold = True
    running = asyncio.create_task(contexts.execute(context_id, call("x"), A))
    await asyncio.wait_for(live.started.wait(), 5)
    await contexts.delete(context_id, A)  # never busy: a delete does not wait for the call
    with pytest.raises(Gone, match="was closed while the operation ran"):
        await running
    assert placement.closed == [live]


async def test_a_failed_sandbox_closes_the_context_and_gives_back_its_memory() -> None:
    placement = FakePlacement()
    budget = MemoryBudget(4096)
    contexts = service(placement, budget, memory_limit_mb=1024)
    context_id = (await contexts.create(CREATE, A)).contextId
    assert budget.held_mb == 1024
    placement.opened[0][1].fail = ContextFailed("the sandbox ended")
    with pytest.raises(Gone, match="the sandbox ended"):
        await contexts.execute(context_id, call("x"), A)
    assert placement.closed == [placement.opened[0][1]] and budget.held_mb == 0
    with pytest.raises(NotFound):
        await contexts.info(context_id, A)


async def test_a_creation_that_fails_holds_nothing() -> None:
    placement = FakePlacement()
    budget = MemoryBudget(4096)
    contexts = service(placement, budget, memory_limit_mb=1024)
    placement.refuse = FileRefused("writable", "input files: no room")
    with pytest.raises(InvalidRequest) as refused:
        await contexts.create(CREATE, A)
    assert refused.value.details[0]["field"] == "files"
    placement.refuse = SandboxUnavailable("no sandbox")
    with pytest.raises(SandboxUnavailable):
        await contexts.create(CREATE, A)
    assert budget.held_mb == 0
    placement.refuse = None
    await contexts.create(CREATE, A)
    await contexts.create(CREATE, A)
    with pytest.raises(Overloaded, match="maxContexts"):  # the key's cap, failures not counted
        await contexts.create(CREATE, A)


async def test_the_memory_budget_bounds_contexts() -> None:
    contexts = service(FakePlacement(), MemoryBudget(1500), memory_limit_mb=1024)
    await contexts.create(CREATE, A)
    with pytest.raises(Overloaded, match="a code context needs 1024 MiB"):
        await contexts.create(CREATE, B)


async def test_no_context_while_the_sandbox_self_test_fails() -> None:
    placement = FakePlacement()
    contexts = service(placement, check=SandboxCheck(ok=False, detail="no bubblewrap"))
    with pytest.raises(SandboxUnavailable, match="no bubblewrap"):
        await contexts.create(CREATE, A)
    assert placement.opened == []


async def test_file_refusals_become_404_and_422() -> None:
    placement = FakePlacement()
    contexts = service(placement, max_output_file_bytes=4)
    context_id = (await contexts.create(CREATE, A)).contextId
    await contexts.write_file(context_id, "./a/b.txt", b"12345", A)
    assert placement.opened[0][1].files == {"a/b.txt": b"12345"}  # normalized as inputs are
    with pytest.raises(NotFound, match="no file 'c'"):
        await contexts.read_file(context_id, "c", A)
    with pytest.raises(InvalidRequest) as large:
        await contexts.read_file(context_id, "a/b.txt", A)
    assert large.value.details[0]["rule"] == "max_bytes"
    assert "MAX_OUTPUT_FILE_BYTES" in large.value.details[0]["message"]
    with pytest.raises(InvalidRequest) as protected:
        await contexts.write_file(context_id, "secrets/k", b"", A)
    assert protected.value.details[0] == {
        "field": "path",
        "rule": "path_protected",
        "message": ".env and secrets/ cannot be written in the workspace",
    }


async def test_stop_closes_every_context() -> None:
    placement = FakePlacement()
    budget = MemoryBudget(4096)
    contexts = service(placement, budget, memory_limit_mb=1024)
    await contexts.start()
    await contexts.create(CREATE, A)
    await contexts.create(CREATE, B)
    await contexts.stop()
    assert len(placement.closed) == 2 and budget.held_mb == 0


async def test_a_call_keeps_executes_size_rules() -> None:
    placement = FakePlacement()
    contexts = service(placement, max_code_bytes=8, max_stdin_bytes=4, max_input_bytes=3)
    context_id = (await contexts.create(CREATE, A)).contextId
    for request, field, rule in (
        (call("x = 123456789"), "code", "max_bytes"),
        (
            ContextExecuteRequest.model_validate({"code": "1", "stdin": "12345"}),
            "stdin",
            "max_bytes",
        ),
        (call("1\x00"), "code", "no_nul"),
    ):
        with pytest.raises(InvalidRequest) as refused:
            await contexts.execute(context_id, request, A)
        assert refused.value.details[0]["field"] == field
        assert refused.value.details[0]["rule"] == rule
    assert placement.opened[0][1].calls == []  # none reached the sandbox
    too_big = CreateContextRequest.model_validate(
        {"files": [{"path": "a", "content": "MTIzNA=="}]}  # 4 bytes
    )
    with pytest.raises(InvalidRequest, match="MAX_INPUT_BYTES"):
        await contexts.create(too_big, A)


async def test_a_cancelled_call_is_interrupted_and_the_context_stays() -> None:
    placement = FakePlacement()
    contexts = service(placement)
    context_id = (await contexts.create(CREATE, A)).contextId
    live = placement.opened[0][1]
    live.hold = True
    running = asyncio.create_task(contexts.execute(context_id, call("x"), A))
    await asyncio.wait_for(live.started.wait(), 5)
    running.cancel()  # what a streamed call's caller going away does
    with pytest.raises(asyncio.CancelledError):
        await running
    assert live.interrupted is True
    info = await contexts.info(context_id, A)
    assert (info.busy, info.calls) == (False, 1)  # the interrupted call ended, and counts
    live.hold = False
    assert (await contexts.execute(context_id, call("again"), A)).stdout == "again"
    assert placement.closed == []


async def test_a_streamed_call_is_told_when_it_begins() -> None:
    placement = FakePlacement()
    contexts = service(placement)
    context_id = (await contexts.create(CREATE, A)).contextId
    told: list[str] = []

    class Events:
        def started(self) -> None:
            told.append("started")

        def __call__(self, event: object) -> None:
            told.append("event")

    await contexts.execute(context_id, call("x"), A, Events())
    assert told == ["started"]  # the fake context reports no events of its own
