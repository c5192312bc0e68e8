"""The wire contract's JSON form: round trips, and a strict decoder that refuses the rest."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from typing import Any

import pytest
from runner.contract import (
    CallOutcome,
    Denial,
    EgressGrant,
    Event,
    Harvested,
    HarvestedFile,
    HarvestLimits,
    InputFile,
    Job,
    NetworkUsage,
    Outcome,
    OutputChunk,
    RichResult,
    RunLimits,
    SandboxLimits,
    SkippedFile,
    SkippedResult,
)
from runner.wire import (
    Failure,
    WireError,
    decode_call,
    decode_event,
    decode_job,
    decode_result,
    encode_call,
    encode_event,
    encode_failure,
    encode_job,
    encode_outcome,
    is_event_line,
    outcome_cap,
    streamed_parts,
)

JOB = Job(
    execution_id="ex-1",
    code="print('é', '\udcff')",
    stdin="in",
    files=(InputFile("data/in.csv", b"\x00\x01"),),
    sandbox=SandboxLimits(workspace_bytes=1000, tmp_bytes=2000),
    limits=RunLimits(timeout_ms=5, output_bytes=10),
    harvest=HarvestLimits(max_files=2, max_file_bytes=4, max_total_bytes=6),
)
OUTCOME = Outcome(
    exit_code=1,
    signal=None,
    timed_out=False,
    stdout=b"\xff" * 10,
    stderr=b"err",
    stdout_truncated=True,
    stderr_truncated=False,
    duration_ms=2.5,
    cpu_user_ms=1.0,
    cpu_system_ms=None,
    max_rss_kb=9000,
    denials=(Denial("network", "example.com:80", "denied"),),
    harvested=Harvested(
        files=(HarvestedFile("a", b"abcd"), HarvestedFile("b", b"ef")),
        skipped=(SkippedFile("c", "too_large", 9),),
    ),
)


def test_jobs_and_outcomes_round_trip() -> None:
    assert decode_job(encode_job(JOB)) == JOB
    assert decode_result(encode_outcome("ex-1", OUTCOME), JOB) == OUTCOME
    without_harvest = replace(JOB, harvest=None, files=(), stdin=None)
    assert decode_job(encode_job(without_harvest)) == without_harvest
    egress = replace(JOB, egress=EgressGrant("10.96.0.9:3128", "grant.sig", 8, 1 << 20))
    assert decode_job(encode_job(egress)) == egress
    used = replace(OUTCOME, network=NetworkUsage(connections=2, bytes_sent=10, bytes_received=20))
    assert decode_result(encode_outcome("ex-1", used), JOB) == used


def test_context_calls_round_trip_and_say_whether_the_interpreter_was_replaced() -> None:
    call = Job("call-1", "x", limits=JOB.limits)
    no_files = replace(OUTCOME, harvested=Harvested())
    for restarted in (False, True):
        answer = encode_call("call-1", CallOutcome(no_files, restarted))
        assert decode_call(answer, call) == CallOutcome(no_files, restarted)
    with pytest.raises(WireError, match="not this call"):
        decode_call(encode_call("call-2", CallOutcome(no_files, False)), call)
    with pytest.raises(WireError, match="restarted"):  # an execution's answer is not a call's
        decode_call(encode_outcome("call-1", no_files), call)


def test_failures_round_trip() -> None:
    failure = Failure("sandbox_failed", "bwrap: no user namespaces")
    assert decode_result(encode_failure("ex-1", failure), JOB) == failure


def job_document(**changes: Any) -> bytes:
    document = json.loads(encode_job(JOB))
    for path, value in changes.items():
        *parents, last = path.split("__")
        target = document
        for parent in parents:
            target = target[parent]
        if value is DELETE:
            del target[last]
        else:
            target[last] = value
    return json.dumps(document).encode()


DELETE = object()


@pytest.mark.parametrize(
    ("changes", "field", "rule"),
    [
        ({"version": 2}, "version", "unsupported"),
        ({"version": "1"}, "version", "type"),
        ({"extra": 1}, "extra", "unknown_field"),
        ({"limits__extra": 1}, "limits.extra", "unknown_field"),
        ({"code": DELETE}, "code", "missing"),
        ({"code": 7}, "code", "type"),
        ({"code": "a\x00b"}, "code", "no_nul"),
        ({"limits__timeoutMs": True}, "limits.timeoutMs", "type"),
        ({"limits__timeoutMs": 0}, "limits.timeoutMs", "range"),
        ({"limits__timeoutMs": 120_001}, "limits.timeoutMs", "range"),
        ({"limits__memoryBytes": -1}, "limits.memoryBytes", "range"),
        ({"sandbox": None}, "sandbox", "type"),
        ({"files": {}}, "files", "type"),
        ({"files": [{"path": "../x", "content": ""}]}, "files[0].path", "path_traversal"),
        ({"files": [{"path": "/abs", "content": ""}]}, "files[0].path", "path_absolute"),
        ({"files": [{"path": ".env", "content": ""}]}, "files[0].path", "path_protected"),
        ({"files": [{"path": "secrets/k", "content": ""}]}, "files[0].path", "path_protected"),
        ({"files": [{"path": "a", "content": "!!!"}]}, "files[0].content", "base64"),
        ({"files": [{"path": "a", "content": "", "mode": 7}]}, "files[0].mode", "unknown_field"),
        (
            {"files": [{"path": "a", "content": ""}, {"path": "./a", "content": ""}]},
            "files",
            "unique_paths",
        ),
        ({"harvest__maxFiles": "50"}, "harvest.maxFiles", "type"),
    ],
)
def test_the_job_decoder_refuses_what_breaks_the_contract(
    changes: dict[str, Any], field: str, rule: str
) -> None:
    with pytest.raises(WireError) as refused:
        decode_job(job_document(**changes))
    assert (refused.value.field, refused.value.rule) == (field, rule)


@pytest.mark.parametrize(
    "raw", [b"", b"[]", b"{not json", b"\xff", b"[" * 100_000 + b"]" * 100_000, b"null"]
)
def test_malformed_documents_are_refused(raw: bytes) -> None:
    with pytest.raises(WireError):
        decode_job(raw)


def test_oversized_documents_are_refused_before_parsing() -> None:
    with pytest.raises(WireError) as refused:
        decode_job(encode_job(JOB), max_bytes=100)
    assert refused.value.rule == "max_bytes"


def outcome_document(**changes: Any) -> bytes:
    document = json.loads(encode_outcome("ex-1", OUTCOME))
    for path, value in changes.items():
        *parents, last = path.split("__")
        target = document
        for parent in parents:
            target = target[parent]
        target[last] = value
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("changes", "field", "rule"),
    [
        # A runner cannot send more than the job it answers allows.
        ({"stdout": "eHh4eHh4eHh4eHg="}, "stdout", "max_bytes"),  # 11 bytes, cap 10
        (
            {"harvest__files": [{"path": f, "content": ""} for f in "abc"]},
            "harvest.files",
            "max_items",
        ),
        (
            {"harvest__files": [{"path": "a", "content": "eHh4eHg="}]},
            "harvest.files[0].content",
            "max_bytes",
        ),
        (
            {
                "harvest__files": [
                    {"path": "a", "content": "eHh4eA=="},
                    {"path": "b", "content": "eHh4eA=="},
                ]
            },
            "harvest.files",
            "max_bytes",
        ),
        ({"denials": [{"kind": "k", "target": "t", "detail": "d"}] * 33}, "denials", "max_items"),
        (
            {"denials": [{"kind": "k", "target": "t" * 301, "detail": "d"}]},
            "denials[0].target",
            "max_length",
        ),
        ({"exitCode": 256}, "exitCode", "range"),
        ({"exitCode": "0"}, "exitCode", "type"),
        ({"timedOut": 0}, "timedOut", "type"),
        ({"durationMs": -1}, "durationMs", "type"),
        ({"executionId": "ex-2"}, "executionId", "mismatch"),
        ({"usage__maxRssKb": 1.5}, "usage.maxRssKb", "type"),
        ({"truncated__stdout": None}, "truncated.stdout", "type"),
        ({"version": 0}, "version", "unsupported"),
    ],
)
def test_the_outcome_decoder_holds_the_runner_to_the_jobs_limits(
    changes: dict[str, Any], field: str, rule: str
) -> None:
    with pytest.raises(WireError) as refused:
        decode_result(outcome_document(**changes), JOB)
    assert (refused.value.field, refused.value.rule) == (field, rule)


def test_an_outcome_too_large_for_its_job_is_refused_before_parsing() -> None:
    huge = outcome_document(stderr="A" * (outcome_cap(JOB) + 1))
    with pytest.raises(WireError) as refused:
        decode_result(huge, JOB)
    assert (refused.value.field, refused.value.rule) == ("document", "max_bytes")


# --- rich results and streamed events --------------------------------------------------

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 8).decode()
WITH_RESULTS = replace(
    OUTCOME,
    results=(RichResult("text/plain", "<Figure>", 0), RichResult("image/png", PNG, 0)),
    skipped_results=(SkippedResult("text/html", 0, 99, "too_large"),),
)


def test_results_travel_with_the_outcome() -> None:
    job = replace(JOB, limits=replace(JOB.limits, results_bytes=1000))
    assert decode_result(encode_outcome("ex-1", WITH_RESULTS), job) == WITH_RESULTS


@pytest.mark.parametrize(
    ("result", "rule"),
    [
        (RichResult("image/png", "bm90IGEgcG5n", 0), "invalid"),
        (RichResult("text/x-evil", "x", 0), "invalid"),
        (RichResult("text/plain", "x" * 990, 0), "too_large"),  # its framing counts too
    ],
)
def test_a_runner_that_sends_a_result_its_sandbox_could_not_is_refused(
    result: RichResult, rule: str
) -> None:
    job = replace(JOB, limits=replace(JOB.limits, results_bytes=1000))
    with pytest.raises(WireError) as refused:
        decode_result(encode_outcome("ex-1", replace(OUTCOME, results=(result,))), job)
    assert (refused.value.field, refused.value.rule) == ("results[0].data", rule)


def test_a_job_says_what_figures_come_back_as() -> None:
    job = replace(JOB, figures=("image/svg+xml", "image/png"))
    assert decode_job(encode_job(job)) == job
    for bad in ([], ["image/gif"], ["image/png", "image/png"], "image/png"):
        document = json.loads(encode_job(JOB))
        document["figures"] = bad
        with pytest.raises(WireError) as refused:
            decode_job(json.dumps(document).encode())
        assert (refused.value.field, refused.value.rule) == ("figures", "figure_types")


@pytest.mark.parametrize(
    "event",
    [
        OutputChunk("stdout", b"\xff\x00 raw bytes", 1796689481153.096),
        OutputChunk("stderr", b"err", 0.0),
        RichResult("image/png", PNG, 3),
        Denial("network", "example.com:443", "denied"),
    ],
)
def test_an_event_is_decoded_as_it_was_encoded(event: Event) -> None:
    job = replace(JOB, limits=replace(JOB.limits, output_bytes=100, results_bytes=1000))
    line = encode_event(event)
    assert is_event_line(line) and b"\n" not in line
    assert decode_event(line, job) == event


@pytest.mark.parametrize(
    ("document", "field", "rule"),
    [
        (
            {"event": "stdout", "data": base64.b64encode(b"x" * 11).decode(), "at": 1},
            "data",
            "max_bytes",
        ),
        ({"event": "stdout", "data": "eA==", "at": -1}, "at", "type"),
        ({"event": "stdout", "data": "eA==", "at": 10**400}, "at", "type"),
        ({"event": "result", "type": "image/png", "data": "eA==", "display": 0}, "data", "invalid"),
        ({"event": "exit", "code": 0}, "event", "unknown"),
        ({"event": "stderr", "data": "eA==", "at": 1, "more": 1}, "more", "unknown_field"),
    ],
)
def test_an_event_that_breaks_the_contract_is_refused(
    document: dict[str, Any], field: str, rule: str
) -> None:
    with pytest.raises(WireError) as refused:
        decode_event(json.dumps(document).encode(), JOB)
    assert (refused.value.field, refused.value.rule) == (field, rule)


def test_a_streamed_answer_is_its_events_then_its_last_line() -> None:
    body = (
        encode_event(OutputChunk("stdout", b"x", 1.0))
        + b"\n"
        + encode_outcome("ex-1", OUTCOME)
        + b"\n"
    )
    events, last = streamed_parts(body)
    assert [decode_event(line, JOB) for line in events] == [OutputChunk("stdout", b"x", 1.0)]
    assert decode_result(last, JOB) == OUTCOME


def test_a_time_that_is_not_a_finite_number_is_refused() -> None:
    for raw in (
        b'{"event": "stdout", "data": "eA==", "at": NaN}',
        b'{"event": "stdout", "data": "eA==", "at": Infinity}',
    ):
        with pytest.raises(WireError) as refused:
            decode_event(raw, JOB)
        assert (refused.value.field, refused.value.rule) == ("at", "type")
