"""Bearer authentication in front of everything (in process, fake backends)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.inprocess import TOKEN, InProcess, running_app


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[InProcess]:
    async with running_app(tmp_path) as running:
        yield running


async def test_health_is_public(app: InProcess) -> None:
    async with app.other_client() as client:
        response = await client.get("/health")
    assert response.status_code == 200
    assert response.json()["backend"] == "fake"


@pytest.mark.parametrize(
    ("headers", "challenge"),
    [
        ([], "Bearer"),
        ([("authorization", "Basic dXNlcjpwYXNz")], "Bearer"),
        ([("authorization", "Bearer")], "Bearer"),
        ([("authorization", "Bearer    ")], "Bearer"),
        ([("authorization", "Bearer wrong-" + TOKEN)], 'Bearer error="invalid_token"'),
        ([("authorization", "Bearer " + TOKEN[:-1])], 'Bearer error="invalid_token"'),
        # Two headers are refused, even when one of them is right: a proxy in front could
        # have read the other one.
        ([("authorization", "Bearer " + TOKEN), ("authorization", "Bearer x")], "Bearer"),
        ([("authorization", "Bearer x"), ("authorization", "Bearer " + TOKEN)], "Bearer"),
    ],
)
async def test_wrong_or_missing_credentials_are_401(
    app: InProcess, headers: list[tuple[str, str]], challenge: str
) -> None:
    async with app.other_client() as client:
        response = await client.post("/execute", json={"code": "1"}, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == challenge
    assert response.json()["error"] == "unauthorized"
    assert app.execution.jobs == []


async def test_the_scheme_is_case_blind(app: InProcess) -> None:
    async with app.other_client() as client:
        response = await client.post(
            "/execute", json={"code": "1"}, headers={"Authorization": f"bEaReR {TOKEN}"}
        )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/execute"),
        ("GET", "/docs/other"),  # /docs itself is public (test_openapi.py)
        ("GET", "/openapi.yaml"),
        ("GET", "/no/such/path"),
        ("POST", "/browser/sessions"),
        ("DELETE", "/browser/sessions/bs-1"),
        ("GET", "/health/"),
    ],
)
async def test_auth_comes_before_routing_and_validation(
    app: InProcess, method: str, path: str
) -> None:
    async with app.other_client() as client:
        response = await client.request(method, path, content=b"not json")
    assert response.status_code == 401
