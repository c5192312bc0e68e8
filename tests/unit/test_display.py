"""The sandbox's display machinery (runner.display), as plain functions: no sandbox needed."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from runner import display


def parsed(code: str) -> tuple[Any, Any]:
    return display.split(compile(code, "<string>", "exec", 0x400), code)


@pytest.mark.parametrize(
    ("code", "shown"),
    [
        ("x = 1\nx", "x"),
        ("1 + 1", "1 + 1"),
        ("x = 1\nx;", None),  # a notebook's trailing ; hides the value
        ("x = 1", None),
        ("if True:\n    1", None),
        ("", None),
    ],
)
def test_the_trailing_expression_is_taken_apart(code: str, shown: str | None) -> None:
    import ast

    body, last = parsed(code)
    assert (ast.unparse(last.body) if last is not None else None) == shown
    if last is not None:
        assert len(body.body) == code.count("\n")  # the rest stays, in order


def test_the_value_keeps_its_line_numbers_for_tracebacks() -> None:
    _, last = parsed("a = 1\n\n1 / 0")
    namespace: dict[str, Any] = {}
    with pytest.raises(ZeroDivisionError) as raised:
        eval(compile(last, "<string>", "eval"), namespace)
    assert raised.traceback[-1].lineno == 2  # 0-based: line 3 of the code


class Rich:
    def _repr_html_(self) -> str:
        return "<b>rich</b>"

    def _repr_json_(self) -> dict[str, int]:
        return {"a": 1}

    def _repr_png_(self) -> bytes:
        return b"\x89PNG"

    def __repr__(self) -> str:
        return "Rich()"


class Broken:
    def _repr_html_(self) -> str:
        raise RuntimeError("no")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class Lies:
    def __getattr__(self, name: str) -> Any:
        return lambda: "anything"  # an instance that answers every name


def test_an_object_offers_what_its_class_defines() -> None:
    assert display.represent(Rich()) == {
        "text/plain": "Rich()",
        "text/html": "<b>rich</b>",
        "application/json": '{"a": 1}',
        "image/png": "iVBORw==",
    }
    broken = display.represent(Broken())
    assert list(broken) == ["text/plain"] and "repr failed" in broken["text/plain"]
    assert list(display.represent(Lies())) == ["text/plain"]


def test_what_does_not_fit_the_budget_is_named_with_its_size() -> None:
    read_end, write_end = os.pipe()
    try:
        display.CHANNEL.start(write_end, 40, None)
        display.display("short", "x" * 100)
        lines = os.read(read_end, 4096).decode().splitlines()
    finally:
        display.CHANNEL.fd = -1
        os.close(read_end)
        os.close(write_end)
    assert [json.loads(line) for line in lines] == [
        {"result": {"text/plain": "'short'"}},
        {"result": {}, "omitted": {"text/plain": 102}},
    ]
