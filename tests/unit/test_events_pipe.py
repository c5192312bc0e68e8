"""The events pipe read from outside the sandbox (runner.results): every line checked."""

from __future__ import annotations

import asyncio
import base64
import json
import os

import pytest
from runner.contract import MAX_RESULTS, Denial, Event, RichResult, SkippedResult
from runner.results import EventsReader, ResultsBudget, result_refusal

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20).decode()


@pytest.mark.parametrize(
    ("mime", "data", "refusal"),
    [
        ("text/plain", "x", None),
        ("text/html", "<b>", None),
        ("image/png", PNG, None),
        ("image/png", base64.b64encode(b"GIF89a").decode(), "invalid"),
        ("image/png", "not base64!", "invalid"),
        ("application/json", '{"a": [1]}', None),
        ("application/json", "{nope", "invalid"),
        ("application/javascript", "alert(1)", "invalid"),
        ("text/x-anything", "x", "invalid"),
    ],
)
def test_a_result_must_be_what_its_type_says(mime: str, data: str, refusal: str | None) -> None:
    assert result_refusal(mime, data) == refusal


def test_the_budget_keeps_what_fits_and_reports_the_rest() -> None:
    budget = ResultsBudget(100)
    assert budget.add(0, "text/plain", "a" * 50) is not None
    assert budget.add(1, "text/plain", "b" * 50) is None  # 50 + framing is over what is left
    assert budget.add(2, 7, "x") is None
    assert budget.skipped == [
        SkippedResult("text/plain", 1, 50, "too_large"),
        SkippedResult(None, 2, None, "invalid"),
    ]
    many = ResultsBudget(1 << 20)
    for i in range(MAX_RESULTS):
        assert many.add(i, "text/plain", "x") is not None
    assert many.add(MAX_RESULTS, "text/plain", "x") is None
    assert many.skipped[-1].reason == "too_many"


async def read(lines: list[bytes], budget: int = 1 << 20) -> tuple[list[Event], ResultsBudget]:
    """Write ``lines`` to a real pipe and read them as a run's events."""
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    reader = EventsReader(asyncio.get_running_loop(), read_end)
    seen: list[Event] = []
    try:
        os.write(write_end, b"between runs: nobody's\n")
        reader.start(budget, seen.append)
        for line in lines:  # from a thread: the loop reads while a long line is written
            await asyncio.to_thread(os.write, write_end, line)
        return seen, reader.finish()  # what is still in the pipe is read by finish
    finally:
        reader.close()
        os.close(write_end)


async def test_results_and_violations_are_passed_on_as_they_come() -> None:
    lines = [
        b'{"result": {"text/plain": "1", "image/png": "' + PNG.encode() + b'"}}\n',
        b'{"violation": {"kind": "filesystem", "target": "/etc/shadow", "detail": "no"}}\n',
        b'{"result": {"text/plain": "2"}, "omitted": {"text/html": 99999}}\n',
    ]
    seen, budget = await read(lines)
    assert seen == [
        RichResult("text/plain", "1", 0),
        RichResult("image/png", PNG, 0),
        Denial("filesystem", "/etc/shadow", "no"),
        RichResult("text/plain", "2", 1),
    ]
    assert budget.results == [e for e in seen if isinstance(e, RichResult)]
    assert budget.skipped == [SkippedResult("text/html", 1, 99999, "too_large")]


async def test_lines_that_break_the_rules_are_reported_not_passed_on() -> None:
    lines = [
        b"not json\n",
        b"[1, 2]\n",
        b'{"result": "a string"}\n',
        b'{"result": {"text/x-evil": "x"}}\n',
        b"{" * 100_000 + b"\n",  # nested to exhaust the parser
    ]
    seen, budget = await read(lines)
    assert seen == []
    assert [s.reason for s in budget.skipped] == ["invalid"] * 5


async def test_a_flood_past_the_budget_is_dropped_and_reported_once() -> None:
    flood = b'{"result": {"text/plain": "' + b"x" * 200_000 + b'"}}\n'
    seen, budget = await read([flood, flood, b'{"result": {"text/plain": "late"}}\n'], 1000)
    assert seen == []
    assert budget.skipped == [SkippedResult(None, None, None, "too_large")]


def test_json_of_a_result_is_checked_by_parsing_it() -> None:
    assert result_refusal("application/json", json.dumps({"deep": [[[]]]})) is None


async def test_a_flood_of_empty_lines_ends_at_the_line_limit() -> None:
    seen, budget = await read([b"\n" * 100_000, b'{"result": {"text/plain": "late"}}\n'])
    assert seen == []
    assert budget.skipped[-1] == SkippedResult(None, None, None, "too_large")
    assert len(budget.skipped) == MAX_RESULTS + 1  # the empty lines' own, capped


async def test_text_that_no_encoder_takes_is_made_safe_and_sizes_are_bounded() -> None:
    lines = [
        b'{"result": {"text/plain": "a\\ud800b"}}\n',  # a lone surrogate, JSON-escaped
        b'{"violation": {"kind": "network", "target": "\\udfff", "detail": "x"}}\n',
        b'{"result": {}, "omitted": {"text/html": -5, "image/png": 10000000000000000000}}\n',
        b'{"result": {"text/plain": "1", "text/html": "2", "text/latex": "3", "text/markdown":'
        b' "4", "application/json": "5", "image/png": "6", "image/svg+xml": "7"},'
        b' "omitted": {"text/x": 1}}\n',
    ]
    seen, budget = await read(lines)
    for event in seen:
        for text in vars(event).values():
            if isinstance(text, str):
                text.encode("utf-8")  # no lone surrogate left anywhere
    assert [s.size for s in budget.skipped[:2]] == [None, None]
    assert budget.skipped[-1] == SkippedResult(None, 2, None, "invalid")  # more than 7 types
