"""A request's ``network`` field, and what it makes of the deployment's ceiling.

One rule for executions and browser sessions alike: a request may only narrow what the
deployment allows (NETWORK_ALLOWED_DOMAINS, less NETWORK_DENIED_DOMAINS), and a 422
names the entry that tries to go beyond.  They differ in what a deployment that allows
no domain means: no network at all for code (as before there were allowlists), the
public web for a browser (what a browser is for), which a session may still narrow to
its own names.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from controller.errors import InvalidRequest
from sandbox_common.domains import MAX_NAME_CHARS, DomainPolicy, PatternError

MAX_REQUESTED_DOMAINS = 64
FIELD = "network.allowedDomains"


class NetworkRequest(BaseModel):
    """Which of the deployment's allowed domains this execution or session may reach."""

    model_config = ConfigDict(strict=True, extra="forbid")

    allowedDomains: list[Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS + 2)]] = (
        Field(
            max_length=MAX_REQUESTED_DOMAINS,
            description="Names or `*.` wildcards, each within NETWORK_ALLOWED_DOMAINS (for a "
            "browser session in a deployment that allows none: any name) and not denied "
            "(else 422 naming it). Empty: no network.",
            examples=[["api.github.com", "*.githubusercontent.com"]],
        )
    )


def execution_policy(ceiling: DomainPolicy, request: NetworkRequest | None) -> DomainPolicy | None:
    """What an execution may reach: the ceiling, narrowed by the request; None: nothing."""
    if request is None:
        return ceiling if ceiling.allows_anything else None
    if request.allowedDomains and not ceiling.allows_anything:
        raise InvalidRequest(
            FIELD,
            "no_network",
            "this deployment allows no domain (setting NETWORK_ALLOWED_DOMAINS)",
        )
    policy = _narrowed(ceiling, request)
    return policy if policy.allows_anything else None


def session_policy(ceiling: DomainPolicy, request: NetworkRequest | None) -> DomainPolicy:
    """What a browser session may reach: the ceiling's names when it has any (the
    ask-callback is for executions: the names it would be asked about are refused),
    else the public web less the denied names; narrowed by the request."""
    if ceiling.allowed or ceiling.ask_unlisted:
        base = DomainPolicy(ceiling.allowed, ceiling.denied, ceiling.ports)
    else:
        base = DomainPolicy((), ceiling.denied, ceiling.ports, every_name=True)
    return base if request is None else _narrowed(base, request)


def _narrowed(ceiling: DomainPolicy, request: NetworkRequest) -> DomainPolicy:
    try:
        return ceiling.narrowed(request.allowedDomains)
    except PatternError as exc:
        raise InvalidRequest(f"{FIELD}[{exc.index}]", exc.rule, str(exc)) from None
