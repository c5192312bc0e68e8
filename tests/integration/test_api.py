"""The HTTP contract of the local service: auth, health, /execute results and bad input."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import ServiceProcess, refused_start


def test_health_shows_the_warm_pool_filling_to_its_size(service: ServiceProcess) -> None:
    service.execute("print(1)")  # takes one warm sandbox; a replacement is started
    deadline = time.monotonic() + 15
    while httpx.get(service.base_url + "/health").json()["executions"]["warmSandboxes"] != 4:
        assert time.monotonic() < deadline, "the pool never came back to WARM_SANDBOXES (4)"
        time.sleep(0.02)


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
    done = refused_start(env)
    assert done.returncode == 2
    assert "AUTH_TOKEN" in done.stderr


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
