"""The /browser contract: session records (camelCase on the wire).

Navigation and action bodies are the agent's own models (browser_agent.protocol): the
controller validates with them and forwards them unchanged.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from controller.network import NetworkRequest
from controller.sessions.models import IdleTimeout, Labels, Lifetime


class CreateSessionRequest(BaseModel):
    """What a caller asks for.  Unknown fields and wrong types are refused (422)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    device: str = Field(
        "desktop",
        min_length=1,
        max_length=64,
        description="`desktop`, `mobile`, or a Playwright device name such as `iPhone 13`.",
    )
    idleTimeoutS: IdleTimeout = None
    maxLifetimeS: Lifetime = None
    labels: Labels = Field(default_factory=dict)
    network: NetworkRequest | None = Field(
        None,
        description="Narrows what the browser may reach (omitted: the deployment's allowed "
        "domains, or the public web when it allows none; docs/network.md).",
    )


class Viewport(BaseModel):
    width: int
    height: int


class SessionInfo(BaseModel):
    sessionId: str
    device: str
    viewport: Viewport | None
    userAgent: str
    isMobile: bool
    labels: dict[str, str]
    createdAt: datetime
    lastUsedAt: datetime
    expiresAt: datetime = Field(description="When the session closes unless it is used.")
    idleTimeoutS: int
    maxLifetimeS: int


class CreatedSession(SessionInfo):
    tabId: str = Field(description="The session's first tab.")


class SessionList(BaseModel):
    sessions: list[SessionInfo]
    maxSessions: int = Field(description="Sessions open at once at most (MAX_BROWSER_SESSIONS).")
    warmAgents: int = Field(
        description="Browsers started and waiting: creations that cost no launch."
    )
