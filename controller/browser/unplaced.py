"""The session backend of a placement that has none yet: every session is refused, saying why.

Browser sessions on Kubernetes (a BrowserSession resource and its operator) are not
built yet; until they are, ``BACKEND=kubernetes`` serves executions only, and every
``/browser`` call that needs a browser is a 503 that says so, rather than a browser
started somewhere it was not asked for.
"""

from __future__ import annotations

from controller.browser.backend import AgentHandle
from controller.errors import BrowserUnavailable


class UnplacedSessionBackend:
    warm_agents = 0
    device_names: list[str] = []  # noqa: RUF012 - never written

    def __init__(self, placement: str) -> None:
        self.name = placement

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def acquire(self) -> AgentHandle:
        raise BrowserUnavailable(
            f"browser sessions are not available with BACKEND={self.name} yet: "
            "run the service with BACKEND=local for them"
        )

    def give_back(self, handle: AgentHandle) -> None:
        pass

    async def release(self, handle: AgentHandle) -> None:
        pass

    def alive(self, handle: AgentHandle) -> bool:
        return False
