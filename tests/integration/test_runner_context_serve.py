"""``python -m runner serve --context``: one code context over HTTP, as its runner pod runs it.

The runner runs from exactly what the image copies (tests/integration/test_runner_cli.py),
on loopback; the context's setup and the calls' outcomes cross in the wire contract
(runner.wire), decoded here as the controller decodes them.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from runner.contract import MIB, InputFile, Job, OutputChunk, RunLimits, SandboxLimits
from runner.wire import decode_call, decode_event, encode_job, streamed_parts

from tests.integration.test_runner_cli import ServedRunner, image_path  # noqa: F401
from tests.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


class Context:
    def __init__(self, runner: ServedRunner, token: str) -> None:
        self.runner = runner
        self.http = httpx.Client(
            base_url=runner.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def begin(self, files: tuple[InputFile, ...] = (), **changes: Any) -> httpx.Response:
        setup = Job(execution_id="ctx-setup", code="", files=files, limits=RunLimits(), **changes)
        return self.http.post("/context", content=encode_job(setup))

    def run(self, code: str, **fields: Any) -> dict[str, Any]:
        call = {"executionId": "ex-1", "code": code, "timeoutMs": 5000, "graceMs": 500, **fields}
        answer = self.http.post("/run", content=json.dumps(call))
        assert answer.status_code == 200, answer.text
        # The answer is the wire contract's, as the controller reads it: the call's events,
        # a line each, then its outcome's line.
        events, last = streamed_parts(answer.content)
        the_call = Job(call["executionId"], code)
        for line in events:
            decode_event(line, the_call)
        decode_call(last, the_call)
        result: dict[str, Any] = json.loads(last)
        return result


@pytest.fixture
def context(image_path: str) -> Iterator[Context]:  # noqa: F811
    token = secrets.token_urlsafe(24)
    runner = ServedRunner(image_path, token, context=True)
    wait_for(runner.ready, timeout_s=30, what="the context runner to listen")
    served = Context(runner, token)
    yield served
    served.http.close()
    runner.close()


def text(result: dict[str, Any], stream: str = "stdout") -> str:
    return base64.b64decode(result[stream]).decode()


def test_a_context_keeps_its_state_between_calls(context: Context) -> None:
    early = context.http.post("/run", content=b"{}")
    assert (early.status_code, early.json()["error"]) == (409, "not_begun")
    begun = context.begin(files=(InputFile("in.txt", b"hello"),))
    assert begun.status_code == 200, begun.text
    assert context.begin().status_code == 409  # one context per runner
    context.run("greeting = open('in.txt').read()")
    result = context.run("print(greeting.upper())")
    assert (result["exitCode"], text(result), result["restarted"]) == (0, "HELLO\n", False)
    status = context.http.get("/status").json()
    assert status["begun"] is True and status["calls"] == 2 and status["failed"] is None


def test_timeouts_restarts_and_files(context: Context) -> None:
    assert context.begin().status_code == 200
    context.run("kept = 1\nopen('f.txt', 'w').write('data')")
    interrupted = context.run("import time; time.sleep(30)", timeoutMs=300)
    assert interrupted["timedOut"] is True and interrupted["restarted"] is False
    ignored = context.run(
        "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(30)",
        timeoutMs=300,
        graceMs=200,
    )
    assert ignored["restarted"] is True
    assert "NameError" in text(context.run("kept"), "stderr")
    assert context.http.get("/files/f.txt").content == b"data"
    assert context.http.put("/files/d/new.bin", content=b"\x00\x01").status_code == 200
    listed = context.http.get("/files").json()
    assert {f["path"] for f in listed["files"]} == {"f.txt", "d/new.bin"}
    one = context.http.get("/files?max=1").json()  # as many as the controller shows
    assert (len(one["files"]), one["complete"]) == (1, False)
    assert context.http.get("/files?max=0").json()["error"] == "bad_call"
    assert context.http.delete("/files/d").status_code == 200
    missing = context.http.get("/files/d/new.bin")
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    assert context.http.post("/restart").status_code == 200
    # The interrupted call's restart, and this one: what the operator records.
    assert context.http.get("/status").json()["restarts"] == 2


def test_it_is_the_token_holders_alone_and_refuses_bad_input(image_path: str) -> None:  # noqa: F811
    token = secrets.token_urlsafe(24)
    runner = ServedRunner(image_path, token, context=True)
    try:
        wait_for(runner.ready, timeout_s=30, what="the context runner to listen")
        stranger = httpx.post(
            runner.url + "/context", headers={"Authorization": "Bearer nope"}, content=b"{}"
        )
        assert stranger.status_code == 401
        served = Context(runner, token)
        other_mount = served.begin(sandbox=SandboxLimits(workspace_bytes=1 * MIB))
        assert (other_mount.status_code, other_mount.json()["error"]) == (422, "bad_setup")
        assert served.begin().status_code == 200
        for body in (b"not json", b"[" * 100_000, json.dumps({"code": 1}).encode()):
            bad = served.http.post("/run", content=body)
            assert (bad.status_code, bad.json()["error"]) == (422, "bad_call")
        assert served.run("print('fine')")["exitCode"] == 0
        served.http.close()
    finally:
        runner.close()


def test_it_exits_when_no_context_comes(image_path: str) -> None:  # noqa: F811
    runner = ServedRunner(image_path, secrets.token_urlsafe(24), max_idle_s=1, context=True)
    try:
        assert runner.proc.wait(40) == 0
    finally:
        runner.close()


def test_a_second_operation_meanwhile_is_busy(context: Context) -> None:
    assert context.begin().status_code == 200
    call = {"executionId": "ex-slow", "code": "import time; time.sleep(2)", "timeoutMs": 5000}
    with (
        httpx.Client(base_url=context.runner.url, headers=context.http.headers) as other,
        concurrent.futures.ThreadPoolExecutor(1) as pool,  # the slow call's own thread
    ):
        running = pool.submit(other.post, "/run", content=json.dumps({**call, "graceMs": 500}))
        wait_for(lambda: context.http.get("/status").json()["busy"], what="the call under way")
        second = context.http.get("/files")
        assert (second.status_code, second.json()["error"]) == (409, "busy")
        assert running.result(30).status_code == 200
    assert context.http.get("/files").status_code == 200


def test_an_interrupt_reaches_only_the_call_it_names(context: Context) -> None:
    assert context.begin().status_code == 200
    context.run("kept = 'yes'")
    call = {
        "executionId": "ex-slow",
        "code": "import time\nprint('started', flush=True)\ntime.sleep(30)",
        "timeoutMs": 60_000,
        "graceMs": 500,
    }
    with (
        httpx.Client(base_url=context.runner.url, headers=context.http.headers) as other,
        concurrent.futures.ThreadPoolExecutor(1) as pool,  # the slow call's own thread
    ):
        running = pool.submit(other.post, "/run", content=json.dumps(call))
        wait_for(lambda: context.http.get("/status").json()["busy"], what="the call under way")
        for wrong in ({"executionId": "ex-other"}, {}):
            assert context.http.post("/interrupt", content=json.dumps(wrong)).status_code == 200
        assert context.http.get("/status").json()["busy"] is True  # not that call: it runs on
        assert context.http.post("/interrupt", content=b"[").status_code == 422
        named = context.http.post("/interrupt", content=json.dumps({"executionId": "ex-slow"}))
        assert named.status_code == 200
        answer = running.result(30)
    events, last = streamed_parts(answer.content)
    result = json.loads(last)
    assert (result["timedOut"], result["restarted"]) == (True, False)  # KeyboardInterrupt
    assert "KeyboardInterrupt" in base64.b64decode(result["stderr"]).decode()
    chunks = [decode_event(line, Job("ex-slow", "")) for line in events]
    assert OutputChunk("stdout", b"started\n", chunks[0].at) in chunks  # type: ignore[union-attr]
    assert text(context.run("print(kept)")) == "yes\n"  # the context and its state stay
