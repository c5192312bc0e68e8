"""The HTTP contract of the local service: auth, health, /execute results and bad input."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import ROOT, ServiceProcess


def test_health_needs_no_token_and_reports_a_verified_sandbox(service: ServiceProcess) -> None:
    response = httpx.get(service.base_url + "/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["backend"] == "local"
    assert body["sandbox"]["ok"] is True
    assert body["executions"]["admitted"] == 0


def test_health_shows_the_warm_pool_filling_to_its_size(service: ServiceProcess) -> None:
    service.execute("print(1)")  # takes one warm sandbox; a replacement is started
    deadline = time.monotonic() + 15
    while httpx.get(service.base_url + "/health").json()["executions"]["warmSandboxes"] != 4:
        assert time.monotonic() < deadline, "the pool never came back to WARM_SANDBOXES (4)"
        time.sleep(0.02)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-wrong-token"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
    ],
)
def test_execute_without_the_right_token_is_401(
    service: ServiceProcess, headers: dict[str, str]
) -> None:
    response = httpx.post(service.base_url + "/execute", json={"code": "print(1)"}, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"] == "unauthorized"


def test_auth_comes_before_validation(service: ServiceProcess) -> None:
    response = httpx.post(service.base_url + "/execute", content=b"not json")
    assert response.status_code == 401


def test_docs_are_behind_the_token_too(service: ServiceProcess) -> None:
    assert httpx.get(service.base_url + "/openapi.json").status_code == 401
    assert service.client.get("/openapi.json").status_code == 200


def test_a_successful_run(service: ServiceProcess) -> None:
    result = service.execute("import sys; print(2 + 2); print('warn', file=sys.stderr)")
    assert result["exitCode"] == 0
    assert result["stdout"] == "4\n"
    assert result["stderr"] == "warn\n"
    assert result["timedOut"] is False
    assert result["signal"] is None
    assert result["violations"] == []
    assert result["truncated"] == {"stdout": False, "stderr": False}
    assert result["uploads"] == []
    assert result["executionId"].startswith("ex-")
    assert 0 < result["durationMs"] < 10_000
    assert result["usage"]["peakMemoryKb"] > 1000
    assert result["usage"]["cpuUserMs"] >= 0


def test_failing_code_is_a_result_not_an_error(service: ServiceProcess) -> None:
    result = service.execute("def f():\n    raise ValueError('boom')\nf()")
    assert result["exitCode"] == 1
    assert result["stderr"].startswith(
        'Traceback (most recent call last):\n  File "<string>", line 3, in <module>'
    )
    assert "ValueError: boom" in result["stderr"]
    assert "stub" not in result["stderr"]
    assert service.execute("raise SystemExit(7)")["exitCode"] == 7
    message = service.execute("raise SystemExit('bye')")
    assert message["exitCode"] == 1 and message["stderr"] == "bye\n"
    assert service.execute("syntax error here")["exitCode"] == 1


def test_stdin_is_given_or_empty(service: ServiceProcess) -> None:
    given = service.execute("import sys; print(sys.stdin.read().upper())", stdin="héllo\nx")
    assert given["stdout"] == "HÉLLO\nX\n"
    big = "a" * 300_000
    assert (
        service.execute("import sys; print(len(sys.stdin.read()))", stdin=big)["stdout"]
        == "300000\n"
    )
    empty = service.execute("import sys; print(repr(sys.stdin.read()))")
    assert empty["stdout"] == "''\n"


def test_code_runs_like_python_dash_c(service: ServiceProcess) -> None:
    result = service.execute(
        "import sys, atexit\natexit.register(lambda: print('bye'))\n"
        "print(__name__, sys.argv, sys.path[0] == '')"
    )
    assert result["stdout"] == "__main__ ['-c'] True\nbye\n"


def test_exit_behaves_like_the_interpreter(service: ServiceProcess) -> None:
    threads = service.execute(
        "import threading, time\n"
        "def later():\n    time.sleep(0.2); print('thread done', flush=True)\n"
        "threading.Thread(target=later).start()\nprint('main done')"
    )
    assert threads["stdout"] == "main done\nthread done\n"
    unflushed = service.execute(
        "f = open('out.txt', 'w'); f.write('kept')\n"
        "import atexit; atexit.register(lambda: print(open('out.txt').read()))"
    )
    # Exit handlers run before the namespace is released, as at a normal exit.
    assert unflushed["exitCode"] == 0
    flushed = service.execute(
        "import atexit, os\n"
        "atexit.register(lambda: None)\n"
        "f = open('out.txt', 'w'); f.write('kept')\n"
        "class Check:\n"
        "    def __del__(self):\n"
        "        print('finalized', flush=True)\n"
        "c = Check()"
    )
    assert flushed["stdout"] == "finalized\n"
    # As in CPython, an exit handler's SystemExit is reported and ignored.
    in_handler = service.execute("import atexit, sys; atexit.register(sys.exit, 4)")
    assert in_handler["exitCode"] == 0
    assert "Exception ignored in atexit callback" in in_handler["stderr"]
    big = service.execute("raise SystemExit(256 + 3)")
    assert big["exitCode"] == 3
    syntax = service.execute("def broken(:\n  pass")
    assert syntax["exitCode"] == 1
    assert syntax["stderr"].startswith('  File "<string>", line 1\n')
    assert "SyntaxError" in syntax["stderr"] and "stub" not in syntax["stderr"]


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ({}, "code", "missing"),
        ({"code": 5}, "code", "string_type"),
        ({"code": "x", "timeoutMs": 0}, "timeoutMs", "greater_than_equal"),
        ({"code": "x", "timeoutMs": 120_001}, "timeoutMs", "less_than_equal"),
        ({"code": "x", "timeoutMs": "100"}, "timeoutMs", "int_type"),
        ({"code": "x", "timeoutMs": 1.5}, "timeoutMs", "int_type"),
        ({"code": "x", "stdin": 3}, "stdin", "string_type"),
        ({"code": "x", "public": "yes"}, "public", "bool_type"),
        ({"code": "x", "fileUploadUrl": "ftp://files.example/"}, "fileUploadUrl", "url_scheme"),
        ({"code": "x", "fileUploadUrl": "not a url"}, "fileUploadUrl", "url_parsing"),
        ({"code": "x", "timeout": 5}, "timeout", "extra_forbidden"),
        ({"code": "x\x00y"}, "code", "no_nul"),
    ],
)
def test_bad_fields_are_422_naming_field_and_rule(
    service: ServiceProcess, body: dict[str, object], field: str, rule: str
) -> None:
    response = service.client.post("/execute", json=body)
    assert response.status_code == 422, response.text
    details = response.json()["details"]
    assert {"field": field, "rule": rule} in [
        {"field": d["field"], "rule": d["rule"]} for d in details
    ]


@pytest.mark.parametrize("raw", [b"not json", b"", b"[1, 2]", b'{"code": "x"', b"\xff\xfe"])
def test_non_json_bodies_are_422(service: ServiceProcess, raw: bytes) -> None:
    response = service.client.post("/execute", content=raw)
    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "body"


def test_json_without_content_type_is_accepted(service: ServiceProcess) -> None:
    response = service.client.post(
        "/execute",
        content=b'{"code": "print(5)"}',
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert response.json()["stdout"] == "5\n"


def test_unknown_path_and_method_are_json_errors(service: ServiceProcess) -> None:
    assert service.client.get("/nope").json()["error"] == "not_found"
    response = service.client.get("/execute")
    assert response.status_code == 405 and response.json()["error"] == "method_not_allowed"


@pytest.fixture(scope="module")
def small_service() -> Iterator[ServiceProcess]:
    with ServiceProcess(
        max_concurrent_executions="1",
        max_queued_executions="1",
        max_request_bytes="20000",
        max_code_bytes="1000",
        max_stdin_bytes="100",
    ) as svc:
        yield svc


def test_body_over_the_limit_is_413(small_service: ServiceProcess) -> None:
    response = small_service.client.post("/execute", json={"code": "#" * 30_000})
    assert response.status_code == 413
    assert response.json()["details"][0] == {
        "field": "body",
        "rule": "max_bytes",
        "message": "at most 20000 bytes",
    }


def test_chunked_body_over_the_limit_is_413(small_service: ServiceProcess) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"code": "'
        for _ in range(30):
            yield b"#" * 1000
        yield b'"}'

    response = small_service.client.post("/execute", content=chunks())
    assert response.status_code == 413


def test_code_and_stdin_over_their_limits_are_422(small_service: ServiceProcess) -> None:
    response = small_service.client.post("/execute", json={"code": "#" * 1001})
    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "code"
    assert response.json()["details"][0]["rule"] == "max_bytes"
    response = small_service.client.post("/execute", json={"code": "1", "stdin": "é" * 51})
    assert response.json()["details"][0]["field"] == "stdin"


def test_beyond_running_and_queued_is_429_with_retry_after(small_service: ServiceProcess) -> None:
    # One running and one queued fill the service; a third caller is turned away at once.
    results: list[httpx.Response] = []

    def slow() -> None:
        results.append(
            small_service.client.post(
                "/execute", json={"code": "import time; time.sleep(1.5)", "timeoutMs": 10_000}
            )
        )

    threads = [threading.Thread(target=slow) for _ in range(2)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while httpx.get(small_service.base_url + "/health").json()["executions"]["admitted"] < 2:
        assert time.monotonic() < deadline, "the two executions were never admitted"
        time.sleep(0.01)
    refused = small_service.client.post("/execute", json={"code": "print(1)"})
    for thread in threads:
        thread.join()
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"] == "overloaded"
    assert [r.status_code for r in results] == [200, 200]
    assert small_service.execute("print('after')")["stdout"] == "after\n"


@pytest.mark.parametrize("token", ["", "changeme", "too-short"])
def test_service_refuses_to_start_without_a_real_token(token: str) -> None:
    env = {**os.environ, "AUTH_TOKEN": token}
    if not token:
        env.pop("AUTH_TOKEN")
    done = subprocess.run(
        [sys.executable, "-m", "controller"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "AUTH_TOKEN" in done.stderr


def test_site_setup_matches_a_normal_interpreter(service: ServiceProcess) -> None:
    # The sandbox starts Python with -S and sets up site itself: check what code sees.
    result = service.execute(
        "import sys, builtins\n"
        "print(all(hasattr(builtins, n) for n in ('exit', 'quit', 'help', 'copyright')))\n"
        "print(any(p.endswith(('site-packages', 'dist-packages')) for p in sys.path))\n"
        "print(sys.prefix == sys.exec_prefix and sys.prefix != '')\n"
        "exit(3)"
    )
    assert result["stdout"] == "True\nTrue\nTrue\n"
    assert result["exitCode"] == 3


def test_without_a_working_sandbox_the_service_fails_closed() -> None:
    broken = ServiceProcess(expect_healthy=False, sandbox_python="/nonexistent/python3")
    try:
        health = httpx.get(broken.base_url + "/health")
        assert health.status_code == 503
        assert health.json()["status"] == "degraded"
        assert health.json()["sandbox"]["ok"] is False
        assert "/nonexistent/python3" in health.json()["sandbox"]["detail"]
        response = broken.client.post("/execute", json={"code": "print(1)"})
        assert response.status_code == 503
        assert response.json()["error"] == "sandbox_unavailable"
    finally:
        broken.stop()


def test_preloaded_modules_are_imported_before_the_code_runs() -> None:
    code = "import sys; print('decimal' in sys.modules, 'fractions' in sys.modules)"
    with ServiceProcess(sandbox_preload="decimal, no_such_module") as svc:
        assert svc.execute(code)["stdout"] == "True False\n"
    with ServiceProcess() as plain:
        assert plain.execute(code)["stdout"] == "False False\n"


def test_a_broken_interpreter_fails_closed_too(tmp_path: Path) -> None:
    broken = tmp_path / "python3"
    broken.write_text("#!/bin/sh\nexit 3\n")
    broken.chmod(0o755)
    with ServiceProcess(expect_healthy=False, sandbox_python=str(broken)) as svc:
        health = httpx.get(svc.base_url + "/health")
        assert health.status_code == 503
        assert "cannot prepare the sandbox" in health.json()["sandbox"]["detail"]
