"""Request bodies: counts refused before per-item work, in the service and in a parser."""

from __future__ import annotations

import json

import pytest

from controller.bodies.frames import BadAnswer, answer, answer_frame
from controller.bodies.pool import ParserPool
from controller.bodies.shape import MAX_NAMED, Limit
from controller.bodies.specs import ACTION, CREATE_SESSION, EXECUTE
from controller.bodies.validate import Invalid, validate
from controller.errors import InvalidRequest
from controller.execution.models import ExecuteRequest

FILES = {"files": Limit(3, "max_items", "at most 3 files (setting MAX_INPUT_FILES)")}


def rules(result: object) -> list[tuple[tuple[object, ...], str]]:
    assert isinstance(result, Invalid), result
    return [(tuple(e["loc"]), e["type"]) for e in result.errors]


def test_too_many_files_are_refused_by_their_count_alone() -> None:
    # Paths that every file's own rules would refuse: the count is all that is looked at.
    files = [{"path": "/" * 2000, "content": "!"} for _ in range(10_000)]
    result = validate(json.dumps({"code": "1", "files": files}).encode(), EXECUTE, FILES)
    assert isinstance(result, Invalid)
    assert result.errors == [
        {"type": "max_items", "loc": ("files",), "msg": FILES["files"].message}
    ]


def test_unknown_fields_are_named_up_to_a_few_then_counted() -> None:
    body = {f"k{i}": 0 for i in range(100_000)} | {"code": "1"}
    found = rules(validate(json.dumps(body).encode(), EXECUTE, {}))
    assert found[:MAX_NAMED] == [((f"k{i}",), "extra_forbidden") for i in range(MAX_NAMED)]
    assert found[MAX_NAMED:] == [((), "unknown_fields")]


def test_nested_counts_are_checked_inside_the_items_and_unions() -> None:
    too_many_keys = {"code": "1", "files": [{"path": "a", "content": "", "x": 1, "y": 2}]}
    assert rules(validate(json.dumps(too_many_keys).encode(), EXECUTE, FILES)) == [
        (("files", 0, "x"), "extra_forbidden"),
        (("files", 0, "y"), "extra_forbidden"),
    ]
    domains = {"code": "1", "network": {"allowedDomains": ["a.example"] * 1000}}
    assert rules(validate(json.dumps(domains).encode(), EXECUTE, {})) == [
        (("network", "allowedDomains"), "too_long")
    ]
    labels = {"labels": {f"k{i}": "v" for i in range(17)}}
    assert rules(validate(json.dumps(labels).encode(), CREATE_SESSION, {})) == [
        (("labels",), "too_long")
    ]
    # A discriminated union is checked against the branch its tag names.
    for tag in ({}, [], 1, "nothing"):  # a tag that names no branch: pydantic says why
        assert rules(validate(json.dumps({"action": tag}).encode(), ACTION, {}))
    values = {"action": "select", "selector": "s", "values": ["v"] * 10_000}
    assert rules(validate(json.dumps(values).encode(), ACTION, {})) == [(("values",), "too_long")]


@pytest.mark.parametrize(
    "raw",
    [b"[" * 100_000 + b"]" * 100_000, b'{"code": ' + b"[" * 5000 + b"]" * 5000 + b"}", b"{", b""],
)
def test_deep_and_broken_json_is_a_syntax_error(raw: bytes) -> None:
    assert rules(validate(raw, EXECUTE, {})) == [((), "json_invalid")]


def test_a_body_within_its_counts_is_validated_by_the_model() -> None:
    body = {"code": "1", "files": [{"path": "a/b", "content": "eA=="}]}
    valid = validate(json.dumps(body).encode(), EXECUTE, FILES)
    assert isinstance(valid, ExecuteRequest) and valid.files[0].data == b"x"
    bad = {"code": "1", "files": [{"path": "a", "content": ""}, {"path": "a/b", "content": ""}]}
    assert rules(validate(json.dumps(bad).encode(), EXECUTE, FILES)) == [
        (("files",), "path_conflict")
    ]


def test_a_parsers_answer_is_read_strictly() -> None:
    errors = [{"type": "max_items", "loc": ["files"], "msg": "at most 3"}]
    kind, found, _ = answer(answer_frame("invalid", errors)[4:])
    assert (kind, found) == (
        "invalid",
        [{"type": "max_items", "loc": ("files",), "msg": "at most 3"}],
    )
    for bad in (b"[]", b"{}", b'{"kind": "owned", "errors": []}', b"not json", b"[" * 5000):
        with pytest.raises(BadAnswer):
            answer(bad)


def test_strings_over_their_limit_are_refused_before_the_model_sees_them() -> None:
    code = {"code": Limit(10, "max_bytes", "at most 10 bytes of UTF-8 (setting MAX_CODE_BYTES)")}
    assert rules(validate(b'{"code": "' + b"x" * 11 + b'"}', EXECUTE, code)) == [
        (("code",), "max_bytes")
    ]
    # A schema's own maximum: pydantic's rule and words.
    long_path = {"code": "1", "files": [{"path": "p" * 2000, "content": ""}]}
    refused = validate(json.dumps(long_path).encode(), EXECUTE, {})
    assert isinstance(refused, Invalid)
    assert refused.errors == [
        {
            "type": "string_too_long",
            "loc": ("files", 0, "path"),
            "msg": "String should have at most 1024 characters",
        }
    ]


async def test_a_parser_process_validates_large_bodies_and_is_bounded() -> None:
    pool = ParserPool(workers=1, timeout_s=30, memory_mb=1024)
    try:
        body = {"code": "x" * 200_000, "files": [{"path": "d/f", "content": "eA=="}]}
        assert await pool.refusal(json.dumps(body).encode(), EXECUTE, FILES, "k") is None
        many = {"code": "1", "files": [{"path": "f", "content": ""}] * 50_000}
        refused = await pool.refusal(json.dumps(many).encode(), EXECUTE, FILES, "k")
        assert rules(refused) == [(("files",), "max_items")]
        # A body that needs more memory than the parser has: refused, and the next one
        # is served by a fresh parser.
        small = ParserPool(workers=1, timeout_s=30, memory_mb=256)
        try:
            huge = b'{"code": "1", "k": [' + b",".join([b"[]"] * 5_000_000) + b"]}"
            with pytest.raises(InvalidRequest) as too_complex:
                await small.refusal(huge, EXECUTE, {}, "k")
            assert too_complex.value.details[0]["rule"] == "too_complex"
            assert await small.refusal(json.dumps(body).encode(), EXECUTE, FILES, "k") is None
        finally:
            await small.close()
    finally:
        await pool.close()


async def test_a_body_that_takes_too_long_to_validate_is_refused_and_its_parser_replaced() -> None:
    pool = ParserPool(workers=1, timeout_s=0.01, memory_mb=1024)
    try:
        slow = json.dumps({f"k{i}": 0 for i in range(300_000)} | {"code": "1"}).encode()
        with pytest.raises(InvalidRequest) as refused:
            await pool.refusal(slow, EXECUTE, {}, "k")
        assert refused.value.details[0]["rule"] == "too_complex"
        assert "more than 0.01 s" in refused.value.message
        pool.timeout_s = 30
        assert await pool.refusal(b'{"code": "1"}', EXECUTE, {}, "k") is None
    finally:
        await pool.close()
