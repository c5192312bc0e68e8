"""The client's retries, timeouts and errors, against answers made up at the HTTP boundary
(httpx.MockTransport); the real service is tests/integration/test_client.py."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import httpx
import pytest
import yaml

import sandbox_client
from sandbox_client import (
    AsyncClient,
    AuthenticationError,
    Client,
    InvalidRequest,
    NotFound,
    Overloaded,
    SandboxClientError,
    TransportError,
)
from sandbox_client.cli import duration_ms, exit_status
from sandbox_client.models import ExecutionResult

RESULT = {
    "executionId": "ex-1",
    "exitCode": 3,
    "signal": None,
    "timedOut": False,
    "stdout": "out",
    "stderr": "err",
    "durationMs": 12.5,
    "violations": [{"kind": "network", "target": "x:443", "detail": "no"}],
    "files": [{"name": "a.txt", "size": 2, "content": "aGk="}],
    "uploads": [],
    "usage": {"peakMemoryKb": 1},
}


def client_with(handler: httpx.MockTransport, **options: object) -> AsyncClient:
    return AsyncClient("http://svc.test", "t" * 32, transport=handler, **options)  # type: ignore[arg-type]


async def test_a_failing_program_is_a_result_not_an_error() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=RESULT)

    async with client_with(httpx.MockTransport(answer)) as client:
        result = await client.execute(
            "import sys; sys.exit(3)", stdin="in", timeout_ms=2000, network=[]
        )
    assert (result.exit_code, result.ok, result.stdout) == (3, False, "out")
    assert result.violations[0].kind == "network" and result.files[0].content == b"hi"
    body = json.loads(seen[0].content)
    assert body == {
        "code": "import sys; sys.exit(3)",
        "files": [],
        "stdin": "in",
        "timeoutMs": 2000,
        "network": {"allowedDomains": []},
    }
    assert seen[0].headers["authorization"] == "Bearer " + "t" * 32
    # The request's own timeout plus what the code may run.
    assert seen[0].extensions["timeout"]["read"] == pytest.approx(32.0)


async def test_429_and_503_are_tried_again_after_retry_after() -> None:
    answers = iter(
        [
            httpx.Response(
                429, json={"error": "overloaded", "message": "busy"}, headers={"Retry-After": "0"}
            ),
            httpx.Response(
                503,
                json={"error": "shutting_down", "message": "stopping"},
                headers={"Retry-After": "0"},
            ),
            httpx.Response(200, json=RESULT),
        ]
    )
    async with client_with(httpx.MockTransport(lambda _: next(answers))) as client:
        assert (await client.execute("1")).execution_id == "ex-1"


async def test_retries_end_with_the_services_error() -> None:
    calls = 0

    def busy(_: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(
            429,
            json={"error": "overloaded", "message": "key 'a' ..."},
            headers={"Retry-After": "0"},
        )

    async with client_with(httpx.MockTransport(busy), retries=2) as client:
        with pytest.raises(Overloaded, match="key 'a'"):
            await client.execute("1")
    assert calls == 3


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (401, {"error": "unauthorized", "message": "invalid bearer token"}, AuthenticationError),
        (
            422,
            {"error": "invalid_request", "message": "m", "details": [{"field": "code"}]},
            InvalidRequest,
        ),
        (404, {"error": "not_found", "message": "no session"}, NotFound),
    ],
)
async def test_errors_name_their_cause(
    status: int, body: dict[str, object], error: type[Exception]
) -> None:
    async with client_with(
        httpx.MockTransport(lambda _: httpx.Response(status, json=body))
    ) as client:
        with pytest.raises(error) as raised:
            await client.execute("1")
    assert str(body["message"]) in str(raised.value)


async def test_an_unreachable_service_is_a_transport_error() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with client_with(httpx.MockTransport(down)) as client:
        with pytest.raises(TransportError, match=r"cannot reach http://svc\.test"):
            await client.execute("1")


def test_the_url_and_token_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SANDBOX_URL", raising=False)
    with pytest.raises(SandboxClientError, match="SANDBOX_URL"):
        Client(token="t" * 32)
    monkeypatch.setenv("SANDBOX_URL", "http://svc.test")
    monkeypatch.delenv("SANDBOX_TOKEN", raising=False)
    with pytest.raises(SandboxClientError, match="SANDBOX_TOKEN"):
        Client()


def test_the_sync_client_is_the_async_one_on_its_own_loop() -> None:
    transport = httpx.MockTransport(lambda _: httpx.Response(200, json=RESULT))
    with Client("http://svc.test", "t" * 32, transport=transport) as client:
        assert client.execute("1").stdout == "out"
        assert client.execute("2").exit_code == 3


def test_durations_and_exit_statuses_of_the_cli() -> None:
    assert [duration_ms(t) for t in ("5s", "500ms", "2m", "1.5")] == [5000, 500, 120_000, 1500]
    result = ExecutionResult.from_json(RESULT)
    assert exit_status(result) == 3
    timed_out = ExecutionResult.from_json({**RESULT, "exitCode": None, "timedOut": True})
    assert exit_status(timed_out) == 124
    killed = ExecutionResult.from_json({**RESULT, "exitCode": None, "signal": 9})
    assert exit_status(killed) == 137


def test_one_version_for_the_service_the_client_and_the_chart() -> None:
    root = Path(__file__).resolve().parents[2]
    chart = yaml.safe_load((root / "helm/Chart.yaml").read_text())
    assert chart["version"] == chart["appVersion"] == sandbox_client.__version__
    for project in ("pyproject.toml", "client/pyproject.toml"):
        toml = tomllib.loads((root / project).read_text())
        assert toml["project"]["dynamic"] == ["version"]
        assert toml["tool"]["setuptools"]["dynamic"]["version"] == {
            "attr": "sandbox_client.__version__"
        }
