"""Name lookups in threads of their own, each with a deadline, a few at a time per owner.

``loop.getaddrinfo`` runs in the loop's default executor, the one that also starts
sandboxes and makes cgroups: a caller whose upload target's name server never answers
would fill it, and every other caller's next execution would wait behind a lookup that
is not theirs.  Here lookups have threads of their own; an owner (a caller's key, an
execution, a session) has at most ``per_owner`` of them at once, and its others wait
their turn; and a lookup, its wait included, is given up after ``timeout_s``.  A thread
blocked in getaddrinfo cannot be stopped: it still counts against its owner until the
system's resolver gives up too, so a caller whose name server never answers waits on
itself, and nobody else's lookups wait behind its.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

AddrInfo = tuple[Any, ...]
THREADS = 1024
"""Lookups in threads at once, all owners together: a bound on threads, never reached
first by design (owners' own caps are), so that owners who fill theirs with lookups that
never return leave threads to the others; threads start only as lookups need them."""
PER_OWNER = 4
TIMEOUT_S = 10.0


class LookupFailed(OSError):
    """The name did not resolve in time (its owner's earlier lookups included)."""


@dataclass
class _Owner:
    busy: int = 0
    waiting: deque[asyncio.Future[None]] = field(default_factory=deque)


class Resolver:
    """getaddrinfo, off the default executor, bounded per owner and in time."""

    def __init__(
        self,
        threads: int = THREADS,
        per_owner: int = PER_OWNER,
        timeout_s: float = TIMEOUT_S,
        lookup: Callable[..., list[AddrInfo]] = socket.getaddrinfo,
    ) -> None:
        """``lookup``: the blocking call (the system's resolver)."""
        self.per_owner = per_owner
        self.timeout_s = timeout_s
        self._lookup = lookup
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="resolver")
        self._owners: dict[str, _Owner] = {}

    async def getaddrinfo(self, host: str, port: int, owner: str = "") -> list[AddrInfo]:
        """``socket.getaddrinfo(host, port, type=SOCK_STREAM)`` for ``owner``; LookupFailed
        (an OSError) when it has not resolved within the deadline, its turn included."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout_s):
                await self._turn(owner)
                lookup: Future[list[AddrInfo]] = self._pool.submit(
                    self._lookup, host, port, type=socket.SOCK_STREAM
                )
                lookup.add_done_callback(lambda _: _call_soon(loop, self._done, owner))
                return await asyncio.wrap_future(lookup)
        except TimeoutError:
            raise LookupFailed(f"{host} did not resolve within {self.timeout_s:g} s") from None

    def busy(self, owner: str) -> int:
        """The owner's lookups whose threads have not returned yet."""
        found = self._owners.get(owner)
        return found.busy if found is not None else 0

    async def _turn(self, owner: str) -> None:
        state = self._owners.setdefault(owner, _Owner())
        if state.busy < self.per_owner and not state.waiting:
            state.busy += 1
            return
        turn = asyncio.get_running_loop().create_future()
        state.waiting.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._done(owner)  # given the turn just as the wait ended: pass it on
            else:
                with contextlib.suppress(ValueError):
                    state.waiting.remove(turn)
            raise

    def _done(self, owner: str) -> None:
        """A thread of ``owner``'s returned: its turn goes to the next one waiting."""
        state = self._owners[owner]
        while state.waiting:
            turn = state.waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        state.busy -= 1
        if not state.busy:
            del self._owners[owner]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _call_soon(loop: asyncio.AbstractEventLoop, call: Any, *args: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the loop has closed: nobody counts any more
        loop.call_soon_threadsafe(call, *args)


_shared: Resolver | None = None


def shared() -> Resolver:
    """The process's resolver (made on first use)."""
    global _shared
    if _shared is None:
        _shared = Resolver()
    return _shared
