"""The /execute contract: request and response records (camelCase on the wire)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Annotated, Literal, get_args

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    UrlConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from runner.contract import FIGURE_TYPES, MAX_PATH_CHARS, MAX_TIMEOUT_MS
from runner.policy import PathRefused, input_path, path_conflict

from controller.network import NetworkRequest

UploadUrl = Annotated[AnyHttpUrl, UrlConstraints(allowed_schemes=["http", "https"])]


class InputFile(BaseModel):
    """A file written into the workspace before the code runs."""

    model_config = ConfigDict(strict=True, extra="forbid")

    path: str = Field(
        min_length=1,
        max_length=MAX_PATH_CHARS,
        description="Relative path inside the workspace, e.g. `data/in.csv`.",
    )
    content: str = Field(description="The file's bytes, base64-encoded.")
    _data: bytes = PrivateAttr(default=b"")

    @field_validator("path")
    @classmethod
    def _relative_path(cls, value: str) -> str:
        try:
            return input_path(value)
        except PathRefused as exc:
            raise PydanticCustomError(exc.rule, exc.message) from None

    @model_validator(mode="after")
    def _decode(self) -> InputFile:
        try:
            self._data = base64.b64decode(self.content, validate=True)
        except (binascii.Error, ValueError):
            raise PydanticCustomError("base64", "content must be standard base64") from None
        return self

    @property
    def data(self) -> bytes:
        return self._data


def distinct(files: list[InputFile]) -> list[InputFile]:
    """``files``, if no two of them are written to the same place (a 422 else)."""
    conflict = path_conflict([f.path for f in files])
    if conflict is not None:
        # The message names a caller's path: a context value, never part of the template.
        raise PydanticCustomError(conflict.rule, "{detail}", {"detail": conflict.message})
    return files


InputFiles = Annotated[list[InputFile], AfterValidator(distinct)]
"""Files for the workspace, no two of them written to the same place."""

FigureType = Literal["image/png", "image/svg+xml"]
assert set(get_args(FigureType)) == set(FIGURE_TYPES)  # the contract's, in the schema


def each_once(formats: list[FigureType]) -> list[FigureType]:
    if len(set(formats)) != len(formats):
        raise PydanticCustomError("unique_items", "each format at most once")
    return formats


FigureFormats = Annotated[list[FigureType], Field(min_length=1), AfterValidator(each_once)]


def png_only() -> list[FigureType]:
    return ["image/png"]


def figure_formats_field() -> FigureFormats:
    """The request field that says what matplotlib figures come back as."""
    return Field(
        default_factory=png_only,
        description="What matplotlib figures the code leaves open (or shows) come back as "
        "in `results`: `image/png`, `image/svg+xml`, or both.",
    )


class ExecuteRequest(BaseModel):
    """What a caller asks to run.  Unknown fields and wrong types are refused (422)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    code: str = Field(description="Python source, run as `python -c CODE`.")
    timeoutMs: int | None = Field(
        None,
        ge=1,
        le=MAX_TIMEOUT_MS,
        description="Wall-clock limit in milliseconds (default: DEFAULT_TIMEOUT_MS, 10000).",
    )
    stdin: str | None = Field(None, description="Text given to the code on standard input.")
    fileUploadUrl: UploadUrl | None = Field(
        None, description="File service that receives the files the code writes (http/https)."
    )
    uploadToken: str | None = Field(
        None, max_length=4096, description="Bearer token sent to fileUploadUrl."
    )
    public: bool = Field(False, description="Passed to the file service with each upload.")
    files: InputFiles = Field(
        default_factory=list, description="Files written into the workspace before the run."
    )
    network: NetworkRequest | None = Field(
        None,
        description="Narrows the deployment's allowed domains for this run (omitted: all "
        "of them; with none allowed, the sandbox has no network at all).",
    )
    figureFormats: FigureFormats = figure_formats_field()


class Violation(BaseModel):
    """One operation the sandbox denied."""

    kind: Literal["filesystem", "network", "limit", "other"]
    target: str
    detail: str


class Truncated(BaseModel):
    stdout: bool
    stderr: bool


class NetworkUsage(BaseModel):
    """What went through the egress proxy (refused connections included in the count)."""

    connections: int
    bytesSent: int
    bytesReceived: int


class Usage(BaseModel):
    """Resources the user's code used (its main process and the children it waited for)."""

    cpuUserMs: float | None
    cpuSystemMs: float | None
    peakMemoryKb: int | None
    network: NetworkUsage | None = Field(
        None, description="Through the egress proxy; null when no domain was allowed."
    )


class Result(BaseModel):
    """One representation of an object the code displayed: the value of its trailing
    expression, `display(obj)`, or a matplotlib figure."""

    type: str = Field(
        description="text/plain, text/html, text/markdown, text/latex, application/json, "
        "image/png or image/svg+xml"
    )
    data: str = Field(
        description="The representation: text; base64 for image/png; the JSON text for "
        "application/json."
    )
    display: int = Field(
        description="Which displayed object it represents (0, 1, ...): one object can "
        "come in several types, the richest a client can show is the one to show."
    )


class SkippedResult(BaseModel):
    """A representation that is not returned, and why."""

    type: str | None
    display: int | None
    size: int | None = Field(description="Its size in characters, when known.")
    reason: str = Field(
        description="too_large (over RESULTS_LIMIT_BYTES for the run), invalid (not what "
        "its type says), or too_many"
    )


class Upload(BaseModel):
    filename: str
    url: str | None
    status: int | str


class OutputFile(BaseModel):
    """A file the code wrote, returned inline."""

    name: str = Field(description="Path relative to the workspace.")
    size: int
    content: str = Field(description="The file's bytes, base64-encoded.")


class SkippedFile(BaseModel):
    """A file the code wrote that is not returned, and why."""

    name: str
    size: int | None
    reason: str = Field(
        description="symlink, not_regular, unreadable, too_large, "
        "too_many_files, total_limit, inline_limit, too_deep, scan_limit, "
        "changed_while_reading, or collection_failed"
    )


@dataclass(frozen=True)
class Inline:
    """A file the code wrote, returned inline: its base64 is kept as bytes, and put into
    the answer's JSON as it is (ExecuteResponse.json_bytes), never decoded to text and
    scanned for escapes: a few megabytes of it cost the event loop tens of milliseconds
    each way."""

    name: str
    size: int
    base64: bytes


class ExecuteResponse(BaseModel):
    """How the execution ended.  A failing program is a result, not an HTTP error."""

    executionId: str
    exitCode: int | None = Field(description="Exit status; null when the sandbox killed it.")
    signal: int | None = Field(description="Signal that ended the code, if one did.")
    timedOut: bool
    stdout: str
    stderr: str
    durationMs: float
    truncated: Truncated
    violations: list[Violation]
    usage: Usage
    uploads: list[Upload]
    files: list[OutputFile] = Field(description="Files returned inline (no fileUploadUrl).")
    skippedFiles: list[SkippedFile]
    results: list[Result] = Field(
        default_factory=list,
        description="Rich results in the order they were displayed (the trailing "
        "expression's value last but for figures left open, which come after it).",
    )
    skippedResults: list[SkippedResult] = Field(default_factory=list)
    _inline: list[Inline] = PrivateAttr(default_factory=list)

    def set_inline(self, files: list[Inline]) -> None:
        """``files`` as this answer's ``files``, their contents kept as bytes."""
        self.files = [OutputFile(name=f.name, size=f.size, content="") for f in files]
        self._inline = files

    def json_bytes(self) -> bytes:
        """The answer's JSON, with each inline file's base64 put in place as it is (it is
        JSON-safe: letters, digits, ``+``, ``/`` and ``=``)."""
        text = self.model_dump_json().encode()
        if not self._inline:
            return text
        # In JSON an empty value of a ``content`` key can only be an OutputFile's: inside
        # a string every quote is escaped.
        parts = text.split(b'"content":""')
        if len(parts) != len(self._inline) + 1:
            raise ValueError("the answer's files and their contents do not match")
        out = [parts[0]]
        for inline, rest in zip(self._inline, parts[1:], strict=True):
            out += [b'"content":"', inline.base64, b'"', rest]
        return b"".join(out)
