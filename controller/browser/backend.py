"""The session backend protocol: where browser agents are placed (this host, or pods)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class AgentHandle:
    """A started agent, ready to be bound to one session.  The token is that session's secret."""

    agent_id: str
    endpoint: str
    token: str = field(repr=False)


class SessionBackend(Protocol):
    name: str
    device_names: list[str]
    """Device names the agents accept, as the latest ready agent reported (empty: unknown)."""

    @property
    def warm_agents(self) -> int:
        """Agents ready for a session now."""

    async def start(self) -> None:
        """Prepare the backend and start the warm agents (without waiting for them)."""

    async def stop(self) -> None:
        """Kill every agent the backend started."""

    async def acquire(self) -> AgentHandle:
        """A ready agent with no session yet; raise BrowserUnavailable if none can start."""

    def give_back(self, handle: AgentHandle) -> None:
        """Return an acquired agent that was never bound to a session to the warm pool."""

    async def release(self, handle: AgentHandle) -> None:
        """Kill the agent and everything it started, and remove its files."""

    def alive(self, handle: AgentHandle) -> bool:
        """Whether the agent is still running."""
