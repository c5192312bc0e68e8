"""Stopping without dropping work: what SIGTERM starts before the server closes.

On the first SIGTERM the service stops admitting (every new request but /health and
/metrics answers 503 ``shutting_down`` with Retry-After, and /health answers 503, so a
load balancer takes the replica out), lets the requests in flight finish for at most
SHUTDOWN_GRACE_S, and only then lets the server close; the lifespan then stops the
backends, which kills whatever still runs.  A second signal stops at once.
"""

from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger(__name__)

ALWAYS_SERVED = frozenset({"/health", "/livez", "/metrics"})
"""Answered while draining: the probes, and the operator's view."""


class Drain:
    """The service's in-flight requests, and whether it is stopping."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.in_flight = 0
        self._since: float | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def draining(self) -> bool:
        return self._since is not None

    def entered(self) -> None:
        self.in_flight += 1
        self._idle.clear()

    def left(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    def begin(self) -> None:
        """Stop admitting (from the signal handler: it only sets state)."""
        if self._since is None:
            self._since = time.monotonic()

    async def wait(self) -> None:
        """Return when nothing is in flight, or at the grace's end."""
        self.begin()
        assert self._since is not None
        log.info(
            "stopping: admitting nothing new, %d requests in flight (waiting up to %.0f s, "
            "setting SHUTDOWN_GRACE_S)",
            self.in_flight,
            self.grace_s,
        )
        try:
            await asyncio.wait_for(self._idle.wait(), self.grace_s)
            log.info("stopping: nothing in flight after %.1f s", time.monotonic() - self._since)
        except TimeoutError:
            log.warning(
                "stopping: %d requests still in flight after %.0f s; what they run is killed",
                self.in_flight,
                self.grace_s,
            )
