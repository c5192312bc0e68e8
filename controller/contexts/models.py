"""The /contexts contract: request and response records (camelCase on the wire)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from runner.contract import MAX_TIMEOUT_MS

from controller.execution.models import (
    ExecuteResponse,
    FigureFormats,
    InputFiles,
    figure_formats_field,
)
from controller.network import NetworkRequest
from controller.sessions.models import IdleTimeout, Labels, Lifetime


class CreateContextRequest(BaseModel):
    """A new context.  Unknown fields and wrong types are refused (422)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    network: NetworkRequest | None = Field(
        None,
        description="Narrows the deployment's allowed domains for every call of the "
        "context (omitted: all of them; with none allowed, no network at all).",
    )
    idleTimeoutS: IdleTimeout = None
    maxLifetimeS: Lifetime = None
    labels: Labels = Field(default_factory=dict)
    files: InputFiles = Field(
        default_factory=list, description="Files written into the workspace at creation."
    )


class ContextInfo(BaseModel):
    """A live context."""

    contextId: str
    labels: dict[str, str]
    allowedDomains: list[str] = Field(
        description="What its calls may reach by name (empty: no network at all)."
    )
    createdAt: datetime
    lastUsedAt: datetime
    expiresAt: datetime = Field(description="When the context closes unless it is used.")
    idleTimeoutS: int
    maxLifetimeS: int
    calls: int = Field(description="Calls run so far.")
    restarts: int = Field(description="Times its interpreter was replaced (state lost).")
    busy: bool = Field(description="A call or a file operation is running now.")


class ContextList(BaseModel):
    contexts: list[ContextInfo]
    maxContexts: int = Field(description="Contexts open at once at most, for this key.")


class ContextExecuteRequest(BaseModel):
    """One call on a context.  Unknown fields and wrong types are refused (422)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    code: str = Field(
        description="Python source, run in the context's `__main__`: what earlier calls "
        "defined (variables, imports, open files) is there."
    )
    timeoutMs: int | None = Field(
        None,
        ge=1,
        le=MAX_TIMEOUT_MS,
        description="Wall-clock limit of this call in milliseconds (default: "
        "DEFAULT_TIMEOUT_MS). Then the code gets KeyboardInterrupt; if it does not stop "
        "within CONTEXT_INTERRUPT_GRACE_MS, the interpreter is restarted.",
    )
    stdin: str | None = Field(None, description="Text given to this call on standard input.")
    figureFormats: FigureFormats = figure_formats_field()


class ContextExecuteResponse(ExecuteResponse):
    """How the call ended: /execute's answer, and whether the interpreter was replaced."""

    restarted: bool = Field(
        description="The interpreter was restarted during this call (it ignored the "
        "interrupt after a timeout, ended itself, or was killed at the memory limit): "
        "its variables are lost, the workspace's files are kept."
    )


class ContextFile(BaseModel):
    path: str = Field(description="Relative to the workspace.")
    size: int


class ContextFiles(BaseModel):
    files: list[ContextFile]
    complete: bool = Field(
        description="False when the workspace holds more than MAX_CONTEXT_FILES files."
    )
