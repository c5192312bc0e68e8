"""The stub's hand-written JSON must be read back exactly by the supervisor's parser."""

from __future__ import annotations

import json

import pytest
from runner.stub import _exit_code, _json


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -7,
        3.25,
        "",
        "plain",
        'quote " and \\ backslash',
        "control \x00\x01\x1f\n\r\t end",
        "unicode é 漢字 🎉",
        [],
        [1, "a", None],
        {"exitCode": 0, "violations": ['{"kind": "network"}'], "nested": {"k": [1.5]}},
    ],
)
def test_round_trip(value: object) -> None:
    assert json.loads(_json(value)) == value


def test_lone_surrogates_become_valid_json() -> None:
    encoded = _json("bad \udcff byte")
    assert json.loads(encoded) == "bad ? byte"
    encoded.encode("utf-8")  # never raises


@pytest.mark.parametrize(("code", "expected"), [(None, 0), (0, 0), (3, 3), (259, 3), (-1, 255)])
def test_system_exit_codes(code: int | None, expected: int) -> None:
    assert _exit_code(code) == expected


def test_system_exit_message_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_code("bye") == 1
    assert capsys.readouterr().err == "bye\n"
