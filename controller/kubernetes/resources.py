"""Custom resources as typed records, parsed once where the watch delivers them.

What the API server sends is a plain JSON object that anyone with write access to the
namespace could have shaped; ``parse`` reads it defensively (a field of the wrong type
reads as absent), so the rest of the code never looks into raw bodies.  The phases and
the fields are declared here once, for the controller that reads them and (with the
builders of controller.kubernetes.session_pods) the operator that writes them: what
every session has (``SessionResource``), and what each kind adds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Self

from controller.keys import DEFAULT_KEY
from controller.kubernetes import browser_manifests, context_manifests
from controller.kubernetes.manifests import LABEL_KEY
from controller.kubernetes.session_pods import (
    EXPIRED,
    FAILED,
    GROUP,
    READY,
    VERSION,
    CustomResource,
    parse_time,
)

BROWSER_SESSIONS = CustomResource(GROUP, VERSION, browser_manifests.PLURAL, browser_manifests.KIND)
CODE_CONTEXTS = CustomResource(GROUP, VERSION, context_manifests.PLURAL, context_manifests.KIND)

SETTLED = (READY, FAILED, EXPIRED)
"""Phases a creation waits for: the session is usable, or never will be."""


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def reported_count(value: Any) -> int | None:
    """A count a session's pod reports (calls, restarts); None unless a plain int >= 0."""
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53
    return value if ok else None


def reported_idle_s(reply: dict[str, Any]) -> float | None:
    """A pod's ``idleS``; None unless a finite count >= 0.

    The pod runs the caller's code or pages, so it may claim anything: a malformed figure
    decides nothing (the lifetime still bounds the session), and none can make it
    expire early.
    """
    idle = reply.get("idleS")
    if isinstance(idle, bool) or not isinstance(idle, int | float):
        return None
    return float(idle) if math.isfinite(idle) and idle >= 0 else None


@dataclass(frozen=True)
class SessionError:
    """A browser's own refusal, kept for the session's creator (an AgentRefused)."""

    status: int
    code: str
    message: str
    details: list[Any] | None = None


@dataclass(frozen=True, kw_only=True)
class SessionStatus:
    """What the operator reports of any session: its phase, and where it is served."""

    phase: str | None = None
    reason: str | None = None
    pod: str | None = None
    endpoint: str | None = None
    token_secret: str | None = None
    ready_at: datetime | None = None
    last_used_at: datetime | None = None
    ended_at: datetime | None = None
    error: SessionError | None = None

    @classmethod
    def parse(cls, raw: Any) -> Self:
        status = _object(raw)
        error = _object(status.get("error"))
        code = error.get("status")
        details = error.get("details")
        return cls(
            phase=_text(status.get("phase")),
            reason=_text(status.get("reason")),
            pod=_text(status.get("pod")),
            endpoint=_text(status.get("endpoint")),
            token_secret=_text(status.get("tokenSecret")),
            ready_at=parse_time(status.get("readyAt")),
            last_used_at=parse_time(status.get("lastUsedAt")),
            ended_at=parse_time(status.get("endedAt")),
            error=SessionError(
                code,
                _text(error.get("code")) or "refused",
                _text(error.get("message")) or "",
                details if isinstance(details, list) else None,
            )
            if isinstance(code, int) and not isinstance(code, bool)
            else None,
            **cls.own_fields(status),
        )

    @classmethod
    def own_fields(cls, status: dict[str, Any]) -> dict[str, Any]:
        """What a kind's status adds, read from the raw status."""
        return {}


@dataclass(frozen=True, kw_only=True)
class BrowserSessionStatus(SessionStatus):
    device: str | None = None
    viewport: dict[str, int] | None = None
    user_agent: str = ""
    is_mobile: bool = False
    tab_id: str = "t1"

    @classmethod
    def own_fields(cls, status: dict[str, Any]) -> dict[str, Any]:
        viewport = _object(status.get("viewport"))
        return {
            "device": _text(status.get("device")),
            "viewport": {
                "width": _int(viewport.get("width")),
                "height": _int(viewport.get("height")),
            }
            if viewport
            else None,
            "user_agent": _text(status.get("userAgent")) or "",
            "is_mobile": status.get("isMobile") is True,
            "tab_id": _text(status.get("tabId")) or "t1",
        }


@dataclass(frozen=True, kw_only=True)
class CodeContextStatus(SessionStatus):
    calls: int = 0
    """Calls run, as of the operator's last look at its runner."""
    restarts: int = 0

    @classmethod
    def own_fields(cls, status: dict[str, Any]) -> dict[str, Any]:
        return {"calls": _int(status.get("calls")), "restarts": _int(status.get("restarts"))}


@dataclass(frozen=True, kw_only=True)
class SessionResource:
    """A session's resource: who owns it, what was asked, and what the operator reports."""

    STATUS: ClassVar[type[SessionStatus]] = SessionStatus

    name: str
    owner: str
    """The name of the key that opened it (a label; before keys, AUTH_TOKEN's)."""
    created: datetime
    deleting: bool
    idle_timeout_s: int
    max_lifetime_s: int
    labels: dict[str, str]
    network: dict[str, Any] | None = None
    """What it may reach, as the controller decided it."""
    status: SessionStatus = field(default_factory=SessionStatus)
    body: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """The object as it came (its uid and the like, for owner references)."""

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Self:
        meta, spec = _object(body.get("metadata")), _object(body.get("spec"))
        labels = _object(spec.get("labels"))
        network = spec.get("network")
        return cls(
            name=str(meta.get("name", "")),
            owner=str(_object(meta.get("labels")).get(LABEL_KEY) or DEFAULT_KEY),
            created=parse_time(meta.get("creationTimestamp")) or datetime.now(UTC),
            deleting=bool(meta.get("deletionTimestamp")),
            idle_timeout_s=_int(spec.get("idleTimeoutS")),
            max_lifetime_s=_int(spec.get("maxLifetimeS")),
            labels={str(k): str(v) for k, v in labels.items()},
            network=network if isinstance(network, dict) else None,
            status=cls.STATUS.parse(body.get("status")),
            body=body,
            **cls.own_fields(spec),
        )

    @classmethod
    def own_fields(cls, spec: dict[str, Any]) -> dict[str, Any]:
        """What a kind's spec adds, read from the raw spec."""
        return {}

    def with_status(self, patch: dict[str, Any]) -> Self:
        """The resource as it reads once ``patch`` (a merge patch of its status) is written."""
        status = {**_object(self.body.get("status")), **patch}
        return type(self).parse({**self.body, "status": status})

    @property
    def phase(self) -> str | None:
        return self.status.phase

    @property
    def settled(self) -> bool:
        return self.phase in SETTLED

    @property
    def open(self) -> bool:
        """Open, or being opened: it counts against the caps."""
        return not self.deleting and self.phase not in (FAILED, EXPIRED)

    @property
    def last_used_at(self) -> datetime:
        return self.status.last_used_at or self.status.ready_at or self.created

    @property
    def expires_at(self) -> datetime:
        return min(
            self.created + timedelta(seconds=self.max_lifetime_s),
            self.last_used_at + timedelta(seconds=self.idle_timeout_s),
        )


@dataclass(frozen=True, kw_only=True)
class BrowserSessionResource(SessionResource):
    """A BrowserSession: a session of a browser pod, for one device."""

    STATUS: ClassVar[type[SessionStatus]] = BrowserSessionStatus

    device: str = ""
    status: BrowserSessionStatus = field(default_factory=BrowserSessionStatus)

    @classmethod
    def own_fields(cls, spec: dict[str, Any]) -> dict[str, Any]:
        return {"device": _text(spec.get("device")) or ""}


@dataclass(frozen=True, kw_only=True)
class CodeContextResource(SessionResource):
    """A CodeContext: a session of a runner pod that serves one code context."""

    STATUS: ClassVar[type[SessionStatus]] = CodeContextStatus

    status: CodeContextStatus = field(default_factory=CodeContextStatus)
