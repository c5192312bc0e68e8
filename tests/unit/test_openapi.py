"""The OpenAPI document as data, and who may read it (in process, fake backends).

The live contract (every answer the running service gives conforms to this document)
is tests/integration/test_openapi_contract.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from controller.api.openapi import ERRORS, ErrorBody, request_bodies
from controller.execution.models import ExecuteResponse
from tests.inprocess import running_app


def references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from references(value)
    elif isinstance(node, list):
        for value in node:
            yield from references(value)


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


async def test_the_document_is_public_and_every_reference_resolves(tmp_path: Path) -> None:
    async with running_app(tmp_path) as app:
        anonymous = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app.app), base_url="http://controller.test"
        )
        async with anonymous:
            document = (await anonymous.get("/openapi.json")).json()
            for reader in ("/docs", "/redoc"):
                page = await anonymous.get(reader)
                assert page.status_code == 200 and "text/html" in page.headers["content-type"]
            # Everything else still needs the token.
            assert (await anonymous.post("/execute", json={"code": "1"})).status_code == 401
    schemas = document["components"]["schemas"]
    refs = set(references(document))
    assert "#/components/schemas/InputFile" in refs  # the body's own models, not $defs
    assert not [r for r in refs if r.rsplit("/", 1)[-1] not in schemas or "$defs" in r]
    assert document["security"] == [{"bearerAuth": []}]
    assert document["paths"]["/health"]["get"]["security"] == []


async def test_every_operation_documents_its_errors_with_the_shared_body(tmp_path: Path) -> None:
    async with running_app(tmp_path) as app:
        document = (await app.client.get("/openapi.json")).json()
    seen = 0
    for path, method, operation in operations(document):
        responses = operation["responses"]
        if path == "/health":
            assert set(responses) == {"200", "503"}
            continue
        if path == "/livez":
            assert set(responses) == {"200"} and operation["security"] == []
            continue
        assert "401" in responses, (method, path)
        if "requestBody" in operation:
            assert {"408", "413", "422", "429"} <= set(responses), (method, path)
            content = operation["requestBody"]["content"]
            if path.endswith("/files/{path}"):  # a file's bytes, as they are
                assert content == {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                }
            else:
                body = content["application/json"]["schema"]
                assert body["$ref"].startswith("#/components/schemas/")
        for status, answer in responses.items():
            if int(status) >= 400:
                assert int(status) in ERRORS
                schema = answer["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (path, status)
                seen += 1
    assert seen > 50
    execute = document["paths"]["/execute"]["post"]["responses"]
    assert set(execute) == {"200", "401", "408", "413", "422", "429", "503"}
    assert "Retry-After" in execute["429"]["headers"]
    content = document["paths"]["/browser/sessions/{session_id}/content"]
    assert set(content["get"]["responses"]["200"]["content"]) == {"text/html"}
    shot = document["paths"]["/browser/sessions/{session_id}/screenshot"]["get"]
    assert set(shot["responses"]["200"]["content"]) == {"image/png"}
    assert document["components"]["schemas"]["Action"]["discriminator"]["propertyName"] == "action"


async def test_api_docs_false_serves_no_description(tmp_path: Path) -> None:
    async with running_app(tmp_path, api_docs=False) as app:
        for path in ("/openapi.json", "/docs", "/redoc"):
            assert (await app.client.get(path)).status_code == 404
            anonymous = await app.client.get(path, headers={"Authorization": ""})
            assert anonymous.status_code == 401


async def test_a_wrong_method_names_every_method_of_the_path(tmp_path: Path) -> None:
    async with running_app(tmp_path) as app:
        response = await app.client.put("/browser/sessions")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    assert response.json()["error"] == "method_not_allowed"


async def test_every_example_is_valid(tmp_path: Path) -> None:
    async with running_app(tmp_path) as app:
        document = (await app.client.get("/openapi.json")).json()
    bodies = request_bodies()
    checked = 0
    for _, _, operation in operations(document):
        media = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
        name = media.get("schema", {}).get("$ref", "/").rsplit("/", 1)[-1]
        for example in media.get("examples", {}).values():
            bodies[name].validate_python(example["value"], strict=False)
            checked += 1
        for answer in operation["responses"].values():
            example = answer.get("content", {}).get("application/json", {}).get("example")
            if example is not None:
                ExecuteResponse.model_validate(example)
                checked += 1
    assert checked >= 9
    for example in ErrorBody.model_json_schema()["examples"]:
        ErrorBody.model_validate(example)
