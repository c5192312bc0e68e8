"""The /execute contract: request and response records (camelCase on the wire)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, UrlConstraints

MAX_TIMEOUT_MS = 120_000

UploadUrl = Annotated[AnyHttpUrl, UrlConstraints(allowed_schemes=["http", "https"])]


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


class Violation(BaseModel):
    """One operation the sandbox denied."""

    kind: Literal["filesystem", "network", "limit", "other"]
    target: str
    detail: str


class Truncated(BaseModel):
    stdout: bool
    stderr: bool


class Usage(BaseModel):
    """Resources the user's code used (its main process and the children it waited for)."""

    cpuUserMs: float | None
    cpuSystemMs: float | None
    peakMemoryKb: int | None


class Upload(BaseModel):
    filename: str
    url: str | None
    status: int | str


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
