"""Mapping a sandbox outcome to the response: annotations, limits, decoding."""

from __future__ import annotations

import signal

from runner.contract import Outcome

from controller.execution.models import Violation
from controller.execution.results import annotation, decode_output, limit_violations


def outcome(**changes: object) -> Outcome:
    base: dict[str, object] = dict(
        exit_code=0,
        signal=None,
        timed_out=False,
        stdout=b"",
        stderr=b"",
        stdout_truncated=False,
        stderr_truncated=False,
        duration_ms=1.0,
    )
    base.update(changes)
    return Outcome(**base)  # type: ignore[arg-type]


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    assert decode_output(b"ok \xff\xfe end") == "ok \ufffd\ufffd end"
    assert decode_output("é".encode()[:1]) == "\ufffd"


def test_no_violations_no_annotation() -> None:
    assert annotation([]) == ""


def test_annotation_names_each_denial() -> None:
    block = annotation(
        [
            Violation(kind="filesystem", target="/etc/x", detail="write denied"),
            Violation(kind="network", target="example.com:80", detail="no network"),
        ]
    )
    assert block.startswith("\n--- sandbox: 2 events ---\n")
    assert "[sandbox] filesystem /etc/x: write denied" in block
    assert "[sandbox] network example.com:80: no network" in block


def test_limits_hit_are_reported() -> None:
    found = limit_violations(outcome(timed_out=True, exit_code=None, stdout_truncated=True), 500)
    assert [(v.kind, v.target) for v in found] == [("limit", "timeoutMs"), ("limit", "stdout")]
    assert "500 ms" in found[0].detail
    xfsz = limit_violations(outcome(exit_code=None, signal=int(signal.SIGXFSZ)), 500)
    assert xfsz[0].target == "SIGXFSZ" and "file size" in xfsz[0].detail


def test_a_killed_stub_is_reported() -> None:
    found = limit_violations(outcome(status_missing=True, exit_code=None), 500)
    assert found[0].kind == "other"


def test_the_whole_executions_memory_limit_is_reported() -> None:
    found = limit_violations(outcome(exit_code=None, signal=9, memory_limit_hit=True), 500)
    assert [(v.kind, v.target) for v in found] == [("limit", "memory")]
