"""Every bad input and every platform failure as a JSON error (in process, fake backends)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from runner.contract import Job, Outcome

from controller.errors import SandboxUnavailable
from controller.execution.backend import SandboxCheck
from tests.inprocess import AUTH, FakeExecutionBackend, InProcess, running_app


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[InProcess]:
    async with running_app(tmp_path, max_request_bytes=4096, max_code_bytes=100) as running:
        yield running


def assert_invalid(response: httpx.Response, field: str, rule: str) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_request"
    assert {"field": field, "rule": rule} in [
        {"field": d["field"], "rule": d["rule"]} for d in body["details"]
    ], body


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        (b'{"code": 1}', "code", "string_type"),
        (b'{"code": "1", "timeoutMs": "100"}', "timeoutMs", "int_type"),
        (b'{"code": "1", "timeoutMs": 1.5}', "timeoutMs", "int_type"),
        (b'{"code": "1", "timeoutMs": 120001}', "timeoutMs", "less_than_equal"),
        (b'{"code": "1", "extra": true}', "extra", "extra_forbidden"),
        (b"{}", "code", "missing"),
        (b"[]", "body", "model_type"),
        (b"{not json", "body", "json_invalid"),
        (b"", "body", "json_invalid"),
        (
            b'{"code": "1", "files": [{"path": "../x", "content": ""}]}',
            "files[0].path",
            "path_traversal",
        ),
        (
            b'{"code": "1", "files": [{"path": ".env", "content": ""}]}',
            "files[0].path",
            "path_protected",
        ),
        (b'{"code": "1", "files": [{"path": "a", "content": "!!"}]}', "files[0]", "base64"),
        (b'{"code": "' + b"x" * 101 + b'"}', "code", "max_bytes"),
        (b'{"code": "a\\u0000b"}', "code", "no_nul"),
        (b'{"code": "1", "fileUploadUrl": "ftp://x.example/"}', "fileUploadUrl", "url_scheme"),
        (
            b'{"code": "1", "fileUploadUrl": "http://169.254.169.254/"}',
            "fileUploadUrl",
            "upload_target",
        ),
    ],
)
async def test_bad_requests_are_422_naming_field_and_rule(
    app: InProcess, body: bytes, field: str, rule: str
) -> None:
    assert_invalid(await app.client.post("/execute", content=body), field, rule)
    assert app.execution.jobs == [], "nothing ran"


async def test_bodies_over_the_limit_are_413_by_length_or_while_streaming(app: InProcess) -> None:
    big = b'{"code": "' + b"x" * 5000 + b'"}'
    declared = await app.client.post("/execute", content=big)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]

    streamed = await app.client.post("/execute", content=chunks())
    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.json()["details"][0] == {
            "field": "body",
            "rule": "max_bytes",
            "message": "at most 4096 bytes",
        }


async def test_unknown_paths_and_methods_are_json(app: InProcess) -> None:
    missing = await app.client.get("/nowhere")
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    wrong = await app.client.get("/execute")
    assert (wrong.status_code, wrong.json()["error"]) == (405, "method_not_allowed")


async def test_a_backend_failure_is_503_with_its_reason(tmp_path: Path) -> None:
    def broken(job: Job) -> Outcome:
        raise SandboxUnavailable("sandbox failed: the pod was evicted")

    async with running_app(tmp_path, execution=FakeExecutionBackend(outcome=broken)) as app:
        response = await app.client.post("/execute", json={"code": "1"})
    assert response.status_code == 503
    assert response.json() == {
        "error": "sandbox_unavailable",
        "message": "sandbox failed: the pod was evicted",
    }


async def test_an_unexpected_failure_is_a_500_that_leaks_nothing(tmp_path: Path) -> None:
    def crash(job: Job) -> Outcome:
        raise RuntimeError("secret internal detail")

    backend = FakeExecutionBackend(outcome=crash)
    async with (
        running_app(tmp_path, execution=backend) as app,
        app.other_client(AUTH, raise_app_exceptions=False) as client,
    ):
        response = await client.post("/execute", json={"code": "1"})
    assert response.status_code == 500
    assert response.json()["error"] == "internal_error"
    assert "secret" not in response.text


async def test_a_failed_self_test_fails_closed(tmp_path: Path) -> None:
    backend = FakeExecutionBackend(
        start_check=SandboxCheck(False, "bwrap: no user namespaces", "per process only")
    )
    async with running_app(tmp_path, execution=backend) as app:
        health = await app.client.get("/health")
        refused = await app.client.post("/execute", json={"code": "1"})
    assert health.status_code == 503
    assert health.json()["sandbox"] == {
        "ok": False,
        "detail": "bwrap: no user namespaces",
        "limits": "per process only",
    }
    assert refused.status_code == 503
    assert "no user namespaces" in refused.json()["message"]
    assert backend.jobs == []
    # Alive all the same, and without a token: a restart would not mend the host, and a
    # liveness probe that failed here would restart the service in a loop.
    async with app.other_client() as anonymous:
        alive = await anonymous.get("/livez")
    assert alive.status_code == 200
    assert alive.json() == {"status": "alive"}


async def test_a_run_that_could_not_write_its_inputs_is_422(tmp_path: Path) -> None:
    def setup_failed(job: Job) -> Outcome:
        return Outcome(None, None, False, b"", b"", False, False, 0.0, setup_error="no space")

    backend = FakeExecutionBackend(outcome=setup_failed)
    async with running_app(tmp_path, execution=backend) as app:
        response = await app.client.post("/execute", json={"code": "1"})
    assert_invalid(response, "files", "writable")
