"""The wire contract between the controller and a browser agent (camelCase, strict JSON).

The controller validates callers' requests with these same models and forwards them
unchanged, so the agent (local process or pod) and the public API cannot drift apart.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from sandbox_common.domains import (
    MAX_NAME_CHARS,
    MAX_PATTERNS,
    DomainPolicy,
    PatternError,
    internal_host,
    parse_patterns,
)

MAX_TIMEOUT_MS = 120_000
DEFAULT_NAVIGATION_TIMEOUT_MS = 30_000
DEFAULT_ACTION_TIMEOUT_MS = 5_000
MAX_SELECTOR_CHARS = 4096
MAX_TEXT_CHARS = 100_000

TabId = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^t[0-9]+$")]
Selector = Annotated[str, Field(min_length=1, max_length=MAX_SELECTOR_CHARS)]
TimeoutMs = Annotated[int, Field(ge=1, le=MAX_TIMEOUT_MS)]
WaitUntil = Literal["load", "domcontentloaded", "networkidle", "commit"]


class Strict(BaseModel):
    """Unknown fields and wrong types are refused (422), as on every endpoint."""

    model_config = ConfigDict(strict=True, extra="forbid")


DomainText = Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS + 2)]


class NetworkRefused(ValueError):
    """A session network the agent refuses; ``field`` and ``rule`` say where and why."""

    def __init__(self, field: str, rule: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.rule = rule


class SessionNetwork(Strict):
    """What a session's browser may reach, as the controller decided it (docs/network.md).

    The agent's proxy builds its gate (sandbox_common.egress_gate) from it.  Every field
    is required, the public web included (``allowedDomains: null``): an agent never
    guesses a policy that a controller or an operator of another version left out.
    """

    allowedDomains: Annotated[list[DomainText], Field(max_length=MAX_PATTERNS)] | None = Field(
        description="Names or `*.` wildcards; null: the public web (every name but the "
        "denied ones and the internal hosts, and public IP addresses, on any port)."
    )
    deniedDomains: list[DomainText] = Field(max_length=MAX_PATTERNS)
    allowedPorts: list[Annotated[int, Field(ge=1, le=65535)]] = Field(max_length=65535)
    internalHosts: dict[DomainText, Annotated[str, Field(max_length=64)]] = Field(
        max_length=MAX_PATTERNS
    )

    @classmethod
    def of(cls, policy: DomainPolicy, internal_hosts: dict[str, str]) -> SessionNetwork:
        return cls(
            allowedDomains=None if policy.every_name else [str(p) for p in policy.allowed],
            deniedDomains=[str(p) for p in policy.denied],
            allowedPorts=sorted(policy.ports),
            internalHosts=dict(internal_hosts),
        )

    def policy(self) -> DomainPolicy:
        """The policy; NetworkRefused names the first entry that is not one."""
        lists = {"allowedDomains": self.allowedDomains or [], "deniedDomains": self.deniedDomains}
        parsed = {}
        for name, entries in lists.items():
            try:
                parsed[name] = parse_patterns(entries)
            except PatternError as exc:
                raise NetworkRefused(f"network.{name}", exc.rule, str(exc)) from None
        return DomainPolicy(
            parsed["allowedDomains"],
            parsed["deniedDomains"],
            frozenset(self.allowedPorts),
            every_name=self.allowedDomains is None,
        )

    def internal_hosts(self) -> dict[str, str]:
        found = {}
        for name, address in self.internalHosts.items():
            try:
                key, value = internal_host(name, address)
            except ValueError as exc:
                raise NetworkRefused("network.internalHosts", "invalid", str(exc)) from None
            found[key] = value
        return found


class ConfigureRequest(Strict):
    """POST /session on the agent: bind the pre-started browser to one session's device
    and network."""

    device: str = Field("desktop", min_length=1, max_length=64)
    network: SessionNetwork = Field(
        description="Required: until a session's policy arrives the agent's proxy lets nothing out."
    )


class Viewport(BaseModel):
    width: int
    height: int


class ConfigureResponse(BaseModel):
    device: str
    viewport: Viewport | None
    userAgent: str
    isMobile: bool
    tabId: str


class NavigateRequest(Strict):
    url: str = Field(min_length=1, max_length=8192)
    waitUntil: WaitUntil = "load"
    tabId: TabId | None = None
    timeoutMs: TimeoutMs | None = None


class NetworkViolation(BaseModel):
    """A connection the session's network policy refused (the shape of an execution's)."""

    kind: Literal["network"] = "network"
    target: str = Field(description="`host:port` as the page asked for it.")
    detail: str


class NavigateResponse(BaseModel):
    tabId: str
    url: str
    status: int | None = Field(description="HTTP status of the main resource; null if none.")
    title: str
    violations: list[NetworkViolation] = Field(
        default_factory=list,
        description="Connections the session's browser had refused while the call ran "
        "(subresources, scripts' fetches, other tabs), the latest 64 at most.",
    )


class Tab(BaseModel):
    tabId: str
    url: str
    title: str


class TabList(BaseModel):
    tabs: list[Tab]
    current: str | None = Field(description="The tab used when a call names none.")


class _Action(Strict):
    tabId: TabId | None = None
    timeoutMs: TimeoutMs | None = None


class ClickAction(_Action):
    action: Literal["click"]
    selector: Selector
    button: Literal["left", "right", "middle"] = "left"
    clickCount: int = Field(1, ge=1, le=3)


class FillAction(_Action):
    action: Literal["fill"]
    selector: Selector
    value: str = Field(max_length=MAX_TEXT_CHARS)


class TypeAction(_Action):
    action: Literal["type"]
    selector: Selector
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    delayMs: int = Field(0, ge=0, le=1000)


class PressAction(_Action):
    action: Literal["press"]
    selector: Selector
    key: str = Field(min_length=1, max_length=64)


class HoverAction(_Action):
    action: Literal["hover"]
    selector: Selector


class SelectAction(_Action):
    action: Literal["select"]
    selector: Selector
    values: list[Annotated[str, Field(max_length=MAX_SELECTOR_CHARS)]] = Field(
        min_length=1, max_length=256
    )


class CheckAction(_Action):
    action: Literal["check"]
    selector: Selector
    checked: bool = True


class ScrollAction(_Action):
    """Scroll an element into view (``selector``), or the page by a delta in CSS pixels."""

    action: Literal["scroll"]
    selector: Selector | None = None
    deltaX: int = Field(0, ge=-1_000_000, le=1_000_000)
    deltaY: int = Field(0, ge=-1_000_000, le=1_000_000)


class WaitForAction(_Action):
    """Wait for an element's state (``selector``), or for the page's load ``state``."""

    action: Literal["wait_for"]
    selector: Selector | None = None
    state: (
        Literal[
            "attached", "detached", "visible", "hidden", "load", "domcontentloaded", "networkidle"
        ]
        | None
    ) = None


Action = Annotated[
    ClickAction
    | FillAction
    | TypeAction
    | PressAction
    | HoverAction
    | SelectAction
    | CheckAction
    | ScrollAction
    | WaitForAction,
    Field(discriminator="action"),
]

ACTION_NAMES = (
    "click",
    "fill",
    "type",
    "press",
    "hover",
    "select",
    "check",
    "scroll",
    "wait_for",
)


ACTION_ADAPTER: TypeAdapter[Action] = TypeAdapter(Action)


def action_error_locs(exc: ValidationError) -> list[dict[str, Any]]:
    """Pydantic's errors for an action, with the tag dropped from each location.

    A discriminated union reports ``("click", "selector")``; callers want ``selector``.
    An unknown or missing ``action`` is reported on the field ``action`` itself.
    """
    errors: list[dict[str, Any]] = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = tuple(error["loc"])
        kind = error["type"]
        if kind in ("union_tag_invalid", "union_tag_not_found"):
            got = error.get("ctx", {}).get("tag")
            rule = "unknown_action" if kind == "union_tag_invalid" else "missing"
            msg = (
                (f"unknown action {got!r}" if kind == "union_tag_invalid" else "field required")
                + "; one of: "
                + ", ".join(ACTION_NAMES)
            )
            errors.append({**error, "loc": ("action",), "type": rule, "msg": msg})
            continue
        if loc and loc[0] in ACTION_NAMES:
            loc = loc[1:]
        errors.append({**error, "loc": loc})
    return errors


class ActionResponse(BaseModel):
    tabId: str
    action: str
    url: str
    result: dict[str, object] | None = None
    violations: list[NetworkViolation] = Field(
        default_factory=list, description="Connections refused while the action ran."
    )


ELEMENT_STATES = frozenset({"attached", "detached", "visible", "hidden"})
LOAD_STATES = frozenset({"load", "domcontentloaded", "networkidle"})


def action_rule_violation(action: Action) -> tuple[str, str, str] | None:
    """The rules that span fields, as ``(field, rule, message)``; None when the action is fine."""
    if isinstance(action, ScrollAction):
        if action.selector is None and action.deltaX == 0 and action.deltaY == 0:
            return ("selector", "missing", "scroll needs a selector, or a non-zero deltaX/deltaY")
        if action.selector is not None and (action.deltaX or action.deltaY):
            return ("deltaY", "exclusive", "give either a selector or deltaX/deltaY, not both")
    if isinstance(action, WaitForAction):
        if action.selector is None and action.state is None:
            return ("selector", "missing", "wait_for needs a selector, or a load state")
        if action.selector is not None and action.state in LOAD_STATES:
            return (
                "state",
                "element_state",
                "with a selector, state is one of: attached, detached, visible, hidden",
            )
        if action.selector is None and action.state in ELEMENT_STATES:
            return (
                "state",
                "load_state",
                "without a selector, state is one of: load, domcontentloaded, networkidle",
            )
    return None
