"""Streamed runs over HTTP (Server-Sent Events), in process: framing, the last event, refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from runner.contract import Job, Outcome, OutputChunk, RichResult
from starlette.requests import Request

from controller.api.streaming import EventStream, frame, wants_stream
from controller.errors import SandboxUnavailable
from tests.inprocess import FakeExecutionBackend, running_app

STREAM = {"Accept": "text/event-stream"}


def parsed(body: str) -> list[tuple[str, Any]]:
    events = []
    for block in body.split("\n\n"):
        if not block or block.startswith(":"):
            continue
        name, data = block.split("\n")
        assert name.startswith("event: ") and data.startswith("data: ")
        events.append((name[len("event: ") :], json.loads(data[len("data: ") :])))
    return events


def rich(job: Job) -> Outcome:
    return Outcome(
        exit_code=0,
        signal=None,
        timed_out=False,
        stdout="héllo\n".encode(),
        stderr=b"warn\n",
        stdout_truncated=False,
        stderr_truncated=False,
        duration_ms=1.0,
        results=(RichResult("text/plain", "42", 0),),
    )


async def test_the_stream_ends_with_the_answer_a_call_without_streaming_gets(
    tmp_path: Path,
) -> None:
    async with running_app(tmp_path, execution=FakeExecutionBackend(outcome=rich)) as app:
        streamed = await app.client.post("/execute", json={"code": "x"}, headers=STREAM)
        plain = (await app.client.post("/execute", json={"code": "x"})).json()
    assert streamed.status_code == 200
    assert streamed.headers["content-type"].startswith("text/event-stream")
    assert streamed.headers["x-accel-buffering"] == "no"
    assert "content-length" not in streamed.headers
    events = parsed(streamed.text)
    assert [name for name, _ in events] == ["stdout", "stderr", "result", "done"]
    assert events[0][1]["text"] == "héllo\n"
    assert events[2][1] == {"type": "text/plain", "data": "42", "display": 0}
    done = events[-1][1]
    for key in ("executionId", "durationMs"):
        done.pop(key), plain.pop(key)
    assert done == plain


async def test_refusals_before_the_run_are_http_errors(tmp_path: Path) -> None:
    async with running_app(tmp_path) as app:
        invalid = await app.client.post("/execute", json={"code": 3}, headers=STREAM)
        assert invalid.status_code == 422
        assert invalid.json()["details"][0]["field"] == "code"
        unknown = await app.client.post(
            "/contexts/ctx-nope/execute", json={"code": "1"}, headers=STREAM
        )
        assert unknown.status_code == 404


async def test_a_platform_failure_during_the_run_is_the_last_event(tmp_path: Path) -> None:
    def broken(job: Job) -> Outcome:
        raise SandboxUnavailable("the sandbox broke down")

    async with running_app(tmp_path, execution=FakeExecutionBackend(outcome=broken)) as app:
        streamed = await app.client.post("/execute", json={"code": "x"}, headers=STREAM)
    assert parsed(streamed.text) == [
        (
            "error",
            {"status": 503, "error": "sandbox_unavailable", "message": "the sandbox broke down"},
        )
    ]


async def test_a_character_cut_between_chunks_is_sent_whole() -> None:
    events = EventStream()
    data = "é€".encode()
    for i in range(len(data)):
        events(OutputChunk("stdout", data[i : i + 1], float(i)))
    events.end(frame("done", b"{}"))
    sent = b""
    while (chunk := await events.next(1.0)) is not None:
        sent += chunk
    texts = [d["text"] for name, d in parsed(sent.decode()) if name == "stdout"]
    assert "".join(texts) == "é€" and "\ufffd" not in "".join(texts)


async def test_a_quiet_stream_gets_keep_alive_comments() -> None:
    assert await EventStream().next(0.01) == b": keep-alive\n\n"


@pytest.mark.parametrize(
    ("accept", "wanted"),
    [
        ("text/event-stream", True),
        ("application/json, text/event-stream;q=0.9", True),
        ("TEXT/EVENT-STREAM", True),
        ("application/json", False),
        ("", False),
        ("text/event-streams", False),
    ],
)
def test_a_stream_is_what_the_accept_header_asks_for(accept: str, wanted: bool) -> None:
    scope = {"type": "http", "headers": [(b"accept", accept.encode())]}
    assert wants_stream(Request(scope)) is wanted
