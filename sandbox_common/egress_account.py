"""One execution's account at the egress proxy: connections, bytes, and what was refused.

Kept where the execution's connections all pass: the controller's channel in local
mode, the runner's relay in a runner pod.  The caps are the execution's own
(NETWORK_MAX_CONNECTIONS, NETWORK_MAX_MB); the refusals become its ``network``
violations.
"""

from __future__ import annotations

from dataclasses import dataclass

from sandbox_common.forward_proxy import Meter

MAX_REFUSALS = 32
REFUSED_HEADER = "X-Sandbox-Proxy-Refused"
"""How the egress proxy marks its own refusals (a runner pod's relay reads it back)."""
MIB = 1024 * 1024


@dataclass(frozen=True)
class Refusal:
    target: str
    """``host:port`` as the code asked for it."""
    reason: str


class EgressAccount:
    def __init__(self, max_connections: int, max_bytes: int) -> None:
        self.max_connections = max_connections
        self.meter = Meter(max_bytes)
        self.connections = 0
        self.refusals: list[Refusal] = []
        self.refused_total = 0

    def admit(self) -> str | None:
        """Count one more connection; why not, when a cap is reached."""
        if self.connections >= self.max_connections:
            return (
                f"the execution's {self.max_connections} connections are used "
                "(setting NETWORK_MAX_CONNECTIONS)"
            )
        if self.meter.exhausted:
            cap = (self.meter.max_bytes or 0) // MIB
            return f"the execution's {cap} MiB are used (setting NETWORK_MAX_MB)"
        self.connections += 1
        return None

    def refuse(self, target: str, reason: str) -> None:
        self.refused_total += 1
        if len(self.refusals) < MAX_REFUSALS:
            self.refusals.append(Refusal(target, reason))
