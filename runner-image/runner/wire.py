"""The JSON form of the contract (runner.contract): encoders, and a strict decoder each way.

A document is one JSON object with ``"version": 1`` and camelCase fields.  Decoding
refuses an unknown version, unknown or missing fields, wrong types, malformed base64,
and anything over its cap, with a ``WireError`` that names the field and the rule.  An
outcome is checked against the limits of the job it answers (never against what the
runner claims): output over the job's cap, or files beyond its harvest limits, are
refused whole, since only a broken or tampered runner sends them.

    job      {version, executionId, code, stdin, files: [{path, content}],
              sandbox: {workspaceBytes, tmpBytes},
              limits: {timeoutMs, memoryBytes, maxProcesses, maxFileBytes, maxOpenFiles,
                       outputBytes, resultsBytes},
              harvest: {maxFiles, maxFileBytes, maxTotalBytes} | null,
              egress: {proxy, token, maxConnections, maxBytes} | null,
              figures: [MIME]}
    outcome  {version, executionId, exitCode, signal, timedOut, stdout, stderr (base64),
              truncated: {stdout, stderr}, durationMs,
              usage: {cpuUserMs, cpuSystemMs, maxRssKb,
                      network: {connections, bytesSent, bytesReceived} | null},
              denials: [{kind, target, detail}], statusMissing, setupError, memoryLimitHit,
              harvest: {files: [{path, content}], skipped: [{path, reason, size}], error},
              results: [{type, data, display}], skippedResults: [{type, display, size,
              reason}]}
    failure  {version, executionId, failure: {code, message}}   the runner itself failed
    event    {event: "stdout"|"stderr", data (base64), at} | {event: "result", type, data,
              display} | {event: "violation", kind, target, detail}
             what a run reports while it runs: a runner streams them, one line each,
             before the line of its outcome
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from runner.contract import (
    FIGURE_TYPES,
    MAX_ERROR_CHARS,
    MAX_PATH_CHARS,
    MAX_REASON_CHARS,
    MAX_RESULTS,
    MAX_SKIPPED,
    MAX_SKIPPED_RESULTS,
    MAX_TIMEOUT_MS,
    MAX_VIOLATION_CHARS,
    MAX_VIOLATIONS,
    MIB,
    WIRE_VERSION,
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
from runner.policy import PathRefused, input_path
from runner.protocol import text_of
from runner.results import ResultsBudget

MAX_JOB_BYTES = 64 * MIB
"""Largest job document a runner accepts (code, stdin and input files, base64)."""
MAX_ID_CHARS = 64
MAX_GRANT_CHARS = 16 * 1024
MAX_CODE_CHARS = 16 * MIB
MAX_INPUT_FILES = 10_000
MAX_LIMIT = 1 << 50
T = TypeVar("T")


class WireError(ValueError):
    """A document that breaks the contract: ``field`` and ``rule`` say where and how."""

    def __init__(self, field: str, rule: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.rule, self.message = field, rule, message


@dataclass(frozen=True)
class Failure:
    """The runner could not run the job at all (a bad job, a sandbox that broke down)."""

    code: str
    message: str


# --- encoding --------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _dumps(document: dict[str, Any]) -> bytes:
    # ensure_ascii: lone surrogates in code or stdin survive as \ud8xx escapes.
    return json.dumps(document, separators=(",", ":")).encode("ascii")


def encode_job(job: Job) -> bytes:
    return _dumps(
        {
            "version": WIRE_VERSION,
            "executionId": job.execution_id,
            "code": job.code,
            "stdin": job.stdin,
            "files": [{"path": f.path, "content": _b64(f.content)} for f in job.files],
            "sandbox": {
                "workspaceBytes": job.sandbox.workspace_bytes,
                "tmpBytes": job.sandbox.tmp_bytes,
            },
            "limits": {
                "timeoutMs": job.limits.timeout_ms,
                "memoryBytes": job.limits.memory_bytes,
                "maxProcesses": job.limits.max_processes,
                "maxFileBytes": job.limits.max_file_bytes,
                "maxOpenFiles": job.limits.max_open_files,
                "outputBytes": job.limits.output_bytes,
                "resultsBytes": job.limits.results_bytes,
            },
            "harvest": harvest_fields(job.harvest),
            "egress": None
            if job.egress is None
            else {
                "proxy": job.egress.proxy,
                "token": job.egress.token,
                "maxConnections": job.egress.max_connections,
                "maxBytes": job.egress.max_bytes,
            },
            "figures": list(job.figures),
        }
    )


def harvest_fields(harvest: HarvestLimits | None) -> dict[str, int] | None:
    """The harvest limits in their wire names (the stub inside reads the same ones)."""
    if harvest is None:
        return None
    return {
        "maxFiles": harvest.max_files,
        "maxFileBytes": harvest.max_file_bytes,
        "maxTotalBytes": harvest.max_total_bytes,
    }


def encode_outcome(execution_id: str, outcome: Outcome) -> bytes:
    return _dumps(_outcome_document(execution_id, outcome))


def encode_call(execution_id: str, call: CallOutcome) -> bytes:
    """A context call's outcome: an execution's, and whether the interpreter was replaced."""
    return _dumps({**_outcome_document(execution_id, call.outcome), "restarted": call.restarted})


def _outcome_document(execution_id: str, outcome: Outcome) -> dict[str, Any]:
    harvested = outcome.harvested
    return {
        "version": WIRE_VERSION,
        "executionId": execution_id,
        "exitCode": outcome.exit_code,
        "signal": outcome.signal,
        "timedOut": outcome.timed_out,
        "stdout": _b64(outcome.stdout),
        "stderr": _b64(outcome.stderr),
        "truncated": {"stdout": outcome.stdout_truncated, "stderr": outcome.stderr_truncated},
        "durationMs": outcome.duration_ms,
        "usage": {
            "cpuUserMs": outcome.cpu_user_ms,
            "cpuSystemMs": outcome.cpu_system_ms,
            "maxRssKb": outcome.max_rss_kb,
            "network": None
            if outcome.network is None
            else {
                "connections": outcome.network.connections,
                "bytesSent": outcome.network.bytes_sent,
                "bytesReceived": outcome.network.bytes_received,
            },
        },
        "denials": [
            {"kind": d.kind, "target": d.target, "detail": d.detail} for d in outcome.denials
        ],
        "statusMissing": outcome.status_missing,
        "setupError": outcome.setup_error,
        "memoryLimitHit": outcome.memory_limit_hit,
        "harvest": {
            "files": [{"path": f.path, "content": _b64(f.content)} for f in harvested.files],
            "skipped": [
                {"path": s.path, "reason": s.reason, "size": s.size} for s in harvested.skipped
            ],
            "error": harvested.error,
        },
        "results": [
            {"type": r.type, "data": r.data, "display": r.display} for r in outcome.results
        ],
        "skippedResults": [
            {"type": s.type, "display": s.display, "size": s.size, "reason": s.reason}
            for s in outcome.skipped_results
        ],
    }


def encode_event(event: Event) -> bytes:
    """One event of a run, as a runner streams it (one line each)."""
    if isinstance(event, OutputChunk):
        document: dict[str, Any] = {
            "event": event.stream,
            "data": _b64(event.data),
            "at": event.at,
        }
    elif isinstance(event, RichResult):
        document = {"event": "result", "type": event.type, "data": event.data}
        document["display"] = event.display
    else:
        document = {
            "event": "violation",
            "kind": event.kind,
            "target": event.target,
            "detail": event.detail,
        }
    return _dumps(document)


def encode_failure(execution_id: str, failure: Failure) -> bytes:
    return _dumps(
        {
            "version": WIRE_VERSION,
            "executionId": execution_id,
            "failure": {"code": failure.code, "message": failure.message[:MAX_ERROR_CHARS]},
        }
    )


# --- strict decoding -------------------------------------------------------------------


class _Object:
    """One JSON object being decoded: each field is taken once; leftovers are refused."""

    def __init__(self, value: object, where: str) -> None:
        if not isinstance(value, dict):
            raise WireError(where or "document", "type", "must be a JSON object")
        self._value: dict[str, Any] = value
        self._where = where
        self._taken: set[str] = set()

    def _name(self, key: str) -> str:
        return f"{self._where}.{key}" if self._where else key

    def _get(self, key: str) -> Any:
        if key not in self._value:
            raise WireError(self._name(key), "missing", "field required")
        self._taken.add(key)
        return self._value[key]

    def has(self, key: str) -> bool:
        return key in self._value

    def refuse(self, key: str, rule: str, message: str) -> WireError:
        return WireError(self._name(key), rule, message)

    def done(self) -> None:
        extra = sorted(set(self._value) - self._taken)
        if extra:
            raise WireError(self._name(extra[0]), "unknown_field", "unknown field")

    def _integer(self, key: str, value: object, low: int, high: int) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise WireError(self._name(key), "type", "must be an integer")
        if not low <= value <= high:
            raise WireError(self._name(key), "range", f"must be within {low} ... {high}")
        return value

    def integer(self, key: str, low: int = 0, high: int = MAX_LIMIT) -> int:
        return self._integer(key, self._get(key), low, high)

    def optional_integer(self, key: str, low: int = 0, high: int = MAX_LIMIT) -> int | None:
        value = self._get(key)
        return None if value is None else self._integer(key, value, low, high)

    def _number(self, key: str, value: object) -> float:
        refused = WireError(self._name(key), "type", "must be a finite non-negative number")
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise refused
        try:
            number = float(value)
        except OverflowError:  # an integer of hundreds of digits
            raise refused from None
        if not math.isfinite(number):  # NaN and Infinity: not JSON, and not a time
            raise refused
        return number

    def number(self, key: str) -> float:
        return self._number(key, self._get(key))

    def optional_number(self, key: str) -> float | None:
        value = self._get(key)
        return None if value is None else self._number(key, value)

    def flag(self, key: str) -> bool:
        value = self._get(key)
        if not isinstance(value, bool):
            raise WireError(self._name(key), "type", "must be true or false")
        return value

    def _text(self, key: str, value: object, max_chars: int) -> str:
        if not isinstance(value, str):
            raise WireError(self._name(key), "type", "must be a string")
        if len(value) > max_chars:
            raise WireError(self._name(key), "max_length", f"at most {max_chars} characters")
        return value

    def text(self, key: str, max_chars: int) -> str:
        return self._text(key, self._get(key), max_chars)

    def optional_text(self, key: str, max_chars: int) -> str | None:
        value = self._get(key)
        return None if value is None else self._text(key, value, max_chars)

    def data(self, key: str, max_bytes: int) -> bytes:
        """Bytes sent as standard base64, at most ``max_bytes`` of them."""
        encoded = self.text(key, (max_bytes + 2) // 3 * 4)
        try:
            decoded = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise WireError(self._name(key), "base64", "must be standard base64") from None
        if len(decoded) > max_bytes:
            raise WireError(self._name(key), "max_bytes", f"at most {max_bytes} bytes")
        return decoded

    def figures(self, key: str) -> tuple[str, ...]:
        """What figures are returned as: one or more of FIGURE_TYPES, each once."""
        value = self._get(key)
        if (
            not isinstance(value, list)
            or not value
            or len(set(value)) != len(value)
            or not all(isinstance(v, str) and v in FIGURE_TYPES for v in value)
        ):
            raise WireError(
                self._name(key), "figure_types", f"one or more of {', '.join(FIGURE_TYPES)}"
            )
        return tuple(value)

    def nested(self, key: str) -> _Object:
        return _Object(self._get(key), self._name(key))

    def optional_nested(self, key: str) -> _Object | None:
        value = self._get(key)
        return None if value is None else _Object(value, self._name(key))

    def items(self, key: str, max_items: int, item: Callable[[_Object], T]) -> tuple[T, ...]:
        """A list of objects, each decoded by ``item`` (and refused if it has more fields)."""
        value = self._get(key)
        if not isinstance(value, list):
            raise WireError(self._name(key), "type", "must be a list")
        if len(value) > max_items:
            raise WireError(self._name(key), "max_items", f"at most {max_items} items")
        decoded = []
        for index, element in enumerate(value):
            obj = _Object(element, f"{self._name(key)}[{index}]")
            decoded.append(item(obj))
            obj.done()
        return tuple(decoded)


def _document_unversioned(raw: bytes, max_bytes: int) -> _Object:
    if len(raw) > max_bytes:
        raise WireError("document", "max_bytes", f"at most {max_bytes} bytes")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise WireError("document", "json_invalid", f"not valid JSON: {exc}") from None
    return _Object(value, "")


def _document(raw: bytes, max_bytes: int) -> _Object:
    document = _document_unversioned(raw, max_bytes)
    version = document.integer("version", 0, 1 << 31)
    if version != WIRE_VERSION:
        raise WireError("version", "unsupported", f"version {version}; this runner speaks 1")
    return document


def decode_job(raw: bytes, max_bytes: int = MAX_JOB_BYTES) -> Job:
    """A job from its JSON form; WireError for anything that breaks the contract."""
    doc = _document(raw, max_bytes)

    def input_file(obj: _Object) -> InputFile:
        path = obj.text("path", MAX_PATH_CHARS)
        try:
            normalized = input_path(path)
        except PathRefused as exc:
            raise obj.refuse("path", exc.rule, exc.message) from None
        return InputFile(normalized, obj.data("content", max_bytes))

    execution_id = doc.text("executionId", MAX_ID_CHARS)
    code = doc.text("code", MAX_CODE_CHARS)
    if "\x00" in code:
        raise WireError("code", "no_nul", "source code cannot contain NUL characters")
    stdin = doc.optional_text("stdin", MAX_CODE_CHARS)
    files = doc.items("files", MAX_INPUT_FILES, input_file)
    if len({f.path for f in files}) != len(files):
        raise WireError("files", "unique_paths", "two files have the same path")
    sandbox_obj = doc.nested("sandbox")
    sandbox = SandboxLimits(
        workspace_bytes=sandbox_obj.integer("workspaceBytes", 1),
        tmp_bytes=sandbox_obj.integer("tmpBytes", 1),
    )
    sandbox_obj.done()
    limits_obj = doc.nested("limits")
    limits = RunLimits(
        timeout_ms=limits_obj.integer("timeoutMs", 1, MAX_TIMEOUT_MS),
        memory_bytes=limits_obj.integer("memoryBytes", 1),
        max_processes=limits_obj.integer("maxProcesses", 1),
        max_file_bytes=limits_obj.integer("maxFileBytes", 1),
        max_open_files=limits_obj.integer("maxOpenFiles", 16),
        output_bytes=limits_obj.integer("outputBytes", 1),
        results_bytes=limits_obj.integer("resultsBytes"),
    )
    limits_obj.done()
    harvest_obj = doc.optional_nested("harvest")
    harvest = None
    if harvest_obj is not None:
        harvest = HarvestLimits(
            max_files=harvest_obj.integer("maxFiles"),
            max_file_bytes=harvest_obj.integer("maxFileBytes"),
            max_total_bytes=harvest_obj.integer("maxTotalBytes"),
        )
        harvest_obj.done()
    egress_obj = doc.optional_nested("egress")
    egress = None
    if egress_obj is not None:
        egress = EgressGrant(
            proxy=egress_obj.text("proxy", 300),
            token=egress_obj.text("token", MAX_GRANT_CHARS),
            max_connections=egress_obj.integer("maxConnections", 1),
            max_bytes=egress_obj.integer("maxBytes", 1),
        )
        egress_obj.done()
    figures = doc.figures("figures")
    doc.done()
    return Job(
        execution_id, code, stdin, files, sandbox, limits, harvest, egress=egress, figures=figures
    )


def outcome_cap(job: Job) -> int:
    """The largest outcome document ``job`` can have: its output and files, base64, plus room."""
    files = job.harvest.max_total_bytes if job.harvest else 0
    # A result's text may grow sixfold as JSON (\u escapes); its skipped ones add a line each.
    results = 6 * job.limits.results_bytes + MAX_RESULTS * 200
    return (2 * job.limits.output_bytes + files) * 4 // 3 + results + 4 * MIB


EVENT_FRAMING = 200
"""What one streamed event may add to its data: its JSON and its base64's growth."""


def events_cap(job: Job) -> int:
    """The most a runner may stream before its outcome for ``job``: its output (in pieces
    merged per 20 ms, runner.coalesce), its results and violations, each framed."""
    pieces = 2 * (job.limits.timeout_ms // 20 + 2) + MAX_RESULTS + MAX_VIOLATIONS
    output = 2 * job.limits.output_bytes * 4 // 3
    return output + 6 * job.limits.results_bytes + pieces * EVENT_FRAMING + MIB


def decode_result(raw: bytes, job: Job) -> Outcome | Failure:
    """The runner's answer to ``job``: its outcome or its failure, held to the job's limits."""
    doc = _document(raw, outcome_cap(job))
    execution_id = doc.text("executionId", MAX_ID_CHARS)
    if execution_id != job.execution_id:
        raise WireError("executionId", "mismatch", f"answers {execution_id!r}, not this job")
    if doc.has("failure"):
        return _failure(doc)
    outcome = _outcome(doc, job)
    doc.done()
    return outcome


def _failure(doc: _Object) -> Failure:
    failure_obj = doc.nested("failure")
    failure = Failure(failure_obj.text("code", 64), failure_obj.text("message", MAX_ERROR_CHARS))
    failure_obj.done()
    doc.done()
    return failure


def is_event_line(line: bytes) -> bool:
    """Whether a line of a streamed answer is an event (``encode_event``'s), not its last."""
    return line.startswith(b'{"event":')


def streamed_parts(body: bytes) -> tuple[list[bytes], bytes]:
    """A whole streamed answer: its event lines, and its last line (the outcome)."""
    lines = body.rstrip(b"\n").split(b"\n")
    return lines[:-1], lines[-1]


def decode_call(raw: bytes, job: Job) -> CallOutcome | Failure:
    """A context call's outcome (``encode_call``) or its failure, held to the limits of
    ``job`` (the call as a job: its id, code and limits)."""
    doc = _document(raw, outcome_cap(job))
    execution_id = doc.text("executionId", MAX_ID_CHARS)
    if execution_id != job.execution_id:
        raise WireError("executionId", "mismatch", f"answers {execution_id!r}, not this call")
    if doc.has("failure"):
        return _failure(doc)
    restarted = doc.flag("restarted")
    outcome = _outcome(doc, job)
    doc.done()
    return CallOutcome(outcome, restarted)


def _outcome(doc: _Object, job: Job) -> Outcome:
    output_cap = job.limits.output_bytes
    harvest_limits = job.harvest or HarvestLimits(0, 0, 0)
    exit_code = doc.optional_integer("exitCode", 0, 255)
    signal = doc.optional_integer("signal", 1, 128)
    timed_out = doc.flag("timedOut")
    stdout = doc.data("stdout", output_cap)
    stderr = doc.data("stderr", output_cap)
    truncated = doc.nested("truncated")
    stdout_truncated, stderr_truncated = truncated.flag("stdout"), truncated.flag("stderr")
    truncated.done()
    duration_ms = doc.number("durationMs")
    usage = doc.nested("usage")
    cpu_user_ms = usage.optional_number("cpuUserMs")
    cpu_system_ms = usage.optional_number("cpuSystemMs")
    max_rss_kb = usage.optional_integer("maxRssKb")
    network_obj = usage.optional_nested("network")
    network = None
    if network_obj is not None:
        network = NetworkUsage(
            network_obj.integer("connections"),
            network_obj.integer("bytesSent"),
            network_obj.integer("bytesReceived"),
        )
        network_obj.done()
    usage.done()
    denials = doc.items(
        "denials",
        MAX_VIOLATIONS,
        lambda o: Denial(
            text_of(o.text("kind", MAX_VIOLATION_CHARS)),
            text_of(o.text("target", MAX_VIOLATION_CHARS)),
            text_of(o.text("detail", MAX_VIOLATION_CHARS)),
        ),
    )
    status_missing = doc.flag("statusMissing")
    setup_error = doc.optional_text("setupError", MAX_ERROR_CHARS)
    memory_limit_hit = doc.flag("memoryLimitHit")
    harvest = doc.nested("harvest")
    files = harvest.items(
        "files",
        harvest_limits.max_files,
        lambda o: HarvestedFile(
            o.text("path", MAX_PATH_CHARS), o.data("content", harvest_limits.max_file_bytes)
        ),
    )
    if sum(len(f.content) for f in files) > harvest_limits.max_total_bytes:
        raise WireError("harvest.files", "max_bytes", "files beyond the job's harvest limits")
    skipped = harvest.items(
        "skipped",
        MAX_SKIPPED,
        lambda o: SkippedFile(
            o.text("path", MAX_PATH_CHARS),
            o.text("reason", MAX_REASON_CHARS),
            o.optional_integer("size"),
        ),
    )
    error = harvest.optional_text("error", MAX_ERROR_CHARS)
    harvest.done()
    results, skipped_results = _results(doc, job)
    return Outcome(
        exit_code=exit_code,
        signal=signal,
        timed_out=timed_out,
        stdout=stdout,
        stderr=stderr,
        stdout_truncated=stdout_truncated,
        stderr_truncated=stderr_truncated,
        duration_ms=duration_ms,
        cpu_user_ms=cpu_user_ms,
        cpu_system_ms=cpu_system_ms,
        max_rss_kb=max_rss_kb,
        denials=denials,
        status_missing=status_missing,
        setup_error=setup_error,
        memory_limit_hit=memory_limit_hit,
        harvested=Harvested(files, skipped, error),
        network=network,
        results=results,
        skipped_results=skipped_results,
    )


MAX_DISPLAYS = 1 << 20


def _results(doc: _Object, job: Job) -> tuple[tuple[RichResult, ...], tuple[SkippedResult, ...]]:
    """The outcome's results, each checked as the sandbox's were (runner.results), and
    together within the job's budget: a runner that sends one that fails is broken."""
    budget = ResultsBudget(job.limits.results_bytes)

    def result(o: _Object) -> RichResult:
        display = o.integer("display", 0, MAX_DISPLAYS)
        mime, data = o.text("type", 100), o.text("data", job.limits.results_bytes)
        kept = budget.add(display, mime, data)
        if kept is None:
            refused = budget.skipped[-1].reason if budget.skipped else "invalid"
            raise o.refuse("data", refused, f"a {mime} result the job cannot have ({refused})")
        return kept

    results = doc.items("results", MAX_RESULTS, result)
    skipped = doc.items(
        "skippedResults",
        MAX_SKIPPED_RESULTS,
        lambda o: SkippedResult(
            text_of(o.optional_text("type", 100) or "") or None,
            o.optional_integer("display", 0, MAX_DISPLAYS),
            o.optional_integer("size"),
            o.text("reason", MAX_REASON_CHARS),
        ),
    )
    return results, skipped


def decode_event(raw: bytes, job: Job) -> Event:
    """One streamed event, held to ``job``'s limits (a chunk within its output cap, a
    result that the sandbox could have sent); WireError for anything else."""
    doc = _document_unversioned(raw, job.limits.results_bytes * 6 + 2 * job.limits.output_bytes)
    kind = doc.text("event", 20)
    event: Event
    if kind in ("stdout", "stderr"):
        event = OutputChunk(kind, doc.data("data", job.limits.output_bytes), doc.number("at"))
    elif kind == "result":
        display = doc.integer("display", 0, MAX_DISPLAYS)
        mime, data = doc.text("type", 100), doc.text("data", job.limits.results_bytes)
        kept = ResultsBudget(job.limits.results_bytes).add(display, mime, data)
        if kept is None:
            raise doc.refuse("data", "invalid", f"not a result the job can have ({mime})")
        event = kept
    elif kind == "violation":
        event = Denial(
            text_of(doc.text("kind", MAX_VIOLATION_CHARS)),
            text_of(doc.text("target", MAX_VIOLATION_CHARS)),
            text_of(doc.text("detail", MAX_VIOLATION_CHARS)),
        )
    else:
        raise doc.refuse("event", "unknown", f"no event {kind[:20]!r}")
    doc.done()
    return event
