"""Name lookups in threads of their own, each with a deadline, a few at a time per owner.

``loop.getaddrinfo`` runs in the loop's default executor, the one that also starts
sandboxes and makes cgroups: a caller whose upload target's name server never answers
would fill it, and every other caller's next execution would wait behind a lookup that
is not theirs.  Here lookups have threads of their own; an owner (a caller's key, a
session) has at most ``per_owner`` of them at once; and a lookup is given up after
``timeout_s`` (its thread is freed when the system's resolver gives up too: a thread
blocked in getaddrinfo cannot be stopped, so it still counts against its owner until
then).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

AddrInfo = tuple[Any, ...]
THREADS = 32
PER_OWNER = 4
TIMEOUT_S = 10.0


class LookupFailed(OSError):
    """The name did not resolve in time, or its owner has too many lookups in flight."""


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
        self._busy: Counter[str] = Counter()

    async def getaddrinfo(self, host: str, port: int, owner: str = "") -> list[AddrInfo]:
        """``socket.getaddrinfo(host, port, type=SOCK_STREAM)`` for ``owner``; LookupFailed
        (an OSError) when it takes longer than the deadline or the owner has too many."""
        if self._busy[owner] >= self.per_owner:
            raise LookupFailed(
                f"{host} is not looked up: {self.per_owner} lookups of the same caller "
                "are still waiting for their name servers"
            )
        self._busy[owner] += 1
        loop = asyncio.get_running_loop()
        lookup: Future[list[AddrInfo]] = self._pool.submit(
            self._lookup, host, port, type=socket.SOCK_STREAM
        )
        lookup.add_done_callback(lambda _: _call_soon(loop, self._done, owner))
        try:
            async with asyncio.timeout(self.timeout_s):
                return await asyncio.wrap_future(lookup)
        except TimeoutError:
            raise LookupFailed(f"{host} did not resolve within {self.timeout_s:g} s") from None

    def busy(self, owner: str) -> int:
        """The owner's lookups whose threads have not returned yet."""
        return self._busy[owner]

    def _done(self, owner: str) -> None:
        self._busy[owner] -= 1
        if not self._busy[owner]:
            del self._busy[owner]

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
