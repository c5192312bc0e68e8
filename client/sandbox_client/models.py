"""What the client returns: small typed records read from the service's JSON."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class InputFile:
    """A file put into the workspace before the code runs."""

    path: str
    """Relative to the workspace."""
    content: bytes

    @classmethod
    def read(cls, local: str | Path, path: str | None = None) -> InputFile:
        local = Path(local)
        return cls(path or local.name, local.read_bytes())

    def wire(self) -> dict[str, str]:
        return {"path": self.path, "content": base64.b64encode(self.content).decode()}


@dataclass(frozen=True)
class Violation:
    """An operation the sandbox denied (``filesystem``, ``network``, ``limit``, ``other``)."""

    kind: str
    target: str
    detail: str


@dataclass(frozen=True)
class Result:
    """A rich result: one representation of an object the code displayed (the value of
    its trailing expression, ``display(obj)``, a matplotlib figure)."""

    type: str
    """``text/plain``, ``text/html``, ``image/png``, ``image/svg+xml``, ``application/json``,
    ``text/markdown`` or ``text/latex``."""
    data: str
    """Text; base64 for ``image/png`` (``content`` decodes it); JSON text for JSON."""
    display: int
    """Which displayed object it represents: one object may come in several types."""

    @property
    def content(self) -> bytes:
        """The representation's bytes (an image decoded from base64, text as UTF-8)."""
        if self.type == "image/png":
            return base64.b64decode(self.data)
        return self.data.encode()

    @property
    def extension(self) -> str:
        return EXTENSIONS.get(self.type, ".txt")


EXTENSIONS = {
    "image/png": ".png",
    "image/svg+xml": ".svg",
    "text/html": ".html",
    "application/json": ".json",
    "text/markdown": ".md",
    "text/latex": ".tex",
    "text/plain": ".txt",
}


@dataclass(frozen=True)
class Output:
    """Output of a streamed run as it was written (``stream``: stdout or stderr)."""

    stream: str
    text: str
    timestamp: float | None
    """When the service read it: milliseconds since the epoch."""


@dataclass(frozen=True)
class OutputFile:
    """A file the code wrote, returned inline."""

    name: str
    content: bytes


@dataclass(frozen=True)
class ExecutionResult:
    """How the code ended.  A failing program is a result: look at ``exit_code``."""

    execution_id: str
    exit_code: int | None
    """None when the sandbox killed it (a timeout, a limit)."""
    signal: int | None
    timed_out: bool
    stdout: str
    stderr: str
    duration_ms: float
    violations: list[Violation] = field(default_factory=list)
    files: list[OutputFile] = field(default_factory=list)
    uploads: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] = field(default_factory=dict)
    results: list[Result] = field(default_factory=list)
    """Rich results in the order they were displayed."""
    skipped_results: list[dict[str, Any]] = field(default_factory=list)
    """Results not returned (over the size limit, invalid), each with ``reason``."""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    """The whole answer, for fields this client does not model."""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ExecutionResult:
        return cls(**cls.fields_of(body))

    @staticmethod
    def fields_of(body: dict[str, Any]) -> dict[str, Any]:
        return dict(
            execution_id=str(body["executionId"]),
            exit_code=body.get("exitCode"),
            signal=body.get("signal"),
            timed_out=bool(body.get("timedOut")),
            stdout=str(body.get("stdout", "")),
            stderr=str(body.get("stderr", "")),
            duration_ms=float(body.get("durationMs", 0.0)),
            violations=[
                Violation(v["kind"], v["target"], v["detail"]) for v in body.get("violations", [])
            ],
            files=[
                OutputFile(f["name"], base64.b64decode(f["content"])) for f in body.get("files", [])
            ],
            uploads=list(body.get("uploads", [])),
            usage=dict(body.get("usage") or {}),
            results=[
                Result(str(r["type"]), str(r["data"]), int(r["display"]))
                for r in body.get("results", [])
            ],
            skipped_results=list(body.get("skippedResults", [])),
            raw=body,
        )


@dataclass(frozen=True)
class ContextResult(ExecutionResult):
    """How a call on a context ended; ``restarted``: its interpreter was replaced (it
    ignored the interrupt after a timeout, ended itself, or hit the memory limit), so
    the variables of earlier calls are gone (the files are kept)."""

    restarted: bool = False

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ContextResult:
        return cls(**cls.fields_of(body), restarted=bool(body.get("restarted")))


@dataclass(frozen=True)
class WorkspaceFile:
    """A file of a context's workspace, as listed."""

    path: str
    size: int
