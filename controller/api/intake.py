"""Request bodies as they arrive: their size, their deadline, and the memory they hold.

A body is refused past MAX_REQUEST_BYTES (413: by Content-Length before a byte is read,
else while it streams) and when it has not all arrived REQUEST_BODY_TIMEOUT_S after its
head (408), so a caller who trickles a body holds nothing for long.  Every body counts
against REQUEST_BODIES_MB from its first byte until its answer has been sent, since
what is parsed from it (and sent on to a sandbox) lives as long as the request: one
caller may hold at most half of it, and large bodies (over 64 KiB) all together at most
seven eighths, so that however many callers fill it with large bodies, a small one
(most requests: code, a navigation, a click) always finds room (429 beyond either).
A large body costs the event loop a few milliseconds a megabyte to take in: each caller
has one large body coming in at a time, so one caller's stream of them shares the loop
with everyone else's requests, rather than taking it.  Across callers there is no such
bound, since a body that trickles would hold its place for others.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controller.api.middleware import KEY_SCOPE, send_error
from controller.bodies.pool import INLINE_BYTES
from controller.errors import ControllerError, Overloaded, RequestTimeout, RequestTooLarge
from controller.fairness import FairSlots

PUBLIC = "(public)"
"""Whose the bodies of public paths are (no caller is known there)."""
LARGE_BYTES = INLINE_BYTES
"""A body larger than this comes in one at a time per caller (the parsers' threshold)."""
EVERY_CALLER = 2**31
"""Large bodies coming in at once, all callers together: one per caller, and no other bound."""
SMALL_RESERVE = 8
"""The share of the budget (one part in this many) that only small bodies may take."""


class BodyBudget:
    """Bytes of request bodies held at once: ``total`` in all, half of it per caller, and
    an eighth of it kept for bodies of at most LARGE_BYTES."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.per_caller = total // 2
        self.for_large = total - total // SMALL_RESERVE
        self.held = 0
        self.held_large = 0
        self._held_by: Counter[str] = Counter()

    def take(self, name: str, size: int, had: int = 0) -> Overloaded | None:
        """Hold ``size`` more bytes for a body of ``name``'s that holds ``had`` already; the
        refusal when that is beyond the budget."""
        large = _large_part(had + size) - _large_part(had)
        refusal = self._refusal(name, size, large)
        if refusal is not None:
            # The rest of the body is not read: the connection cannot carry another request.
            refusal.headers["Connection"] = "close"
            return refusal
        self.held += size
        self.held_large += large
        self._held_by[name] += size
        return None

    def _refusal(self, name: str, size: int, large: int) -> Overloaded | None:
        if large and self.held_large + large > self.for_large:
            return Overloaded(
                f"the large request bodies in flight would exceed {self.for_large} bytes "
                f"(REQUEST_BODIES_MB but an eighth, kept for bodies of at most {LARGE_BYTES} "
                "bytes); retry later",
                retry_after_s=1,
            )
        if self._held_by[name] + size > self.per_caller:
            return Overloaded(
                f"this caller's request bodies in flight would exceed {self.per_caller} bytes, "
                "half of REQUEST_BODIES_MB; retry when its other requests are answered",
                retry_after_s=1,
            )
        if self.held + size > self.total:
            return Overloaded(
                f"the request bodies in flight would exceed {self.total} bytes "
                "(setting REQUEST_BODIES_MB); retry later",
                retry_after_s=1,
            )
        return None

    def give(self, name: str, size: int) -> None:
        """Give back the whole of one body of ``name``'s, ``size`` bytes."""
        self.held -= size
        self.held_large -= _large_part(size)
        self._held_by[name] -= size
        if not self._held_by[name]:
            del self._held_by[name]


def _large_part(size: int) -> int:
    """What a body of ``size`` bytes counts against the large bodies' share: all or nothing."""
    return size if size > LARGE_BYTES else 0


class BodyIntake:
    """The body's cap, deadline and share of the budget, for every request."""

    def __init__(self, app: ASGIApp, limit: int, timeout_s: float, budget: BodyBudget) -> None:
        self.app = app
        self.limit = limit
        self.timeout_s = timeout_s
        self.budget = budget
        self.lanes = FairSlots(EVERY_CALLER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        caller = scope.get(KEY_SCOPE)
        name = caller.name if caller is not None else PUBLIC
        held = 0
        for header, value in scope["headers"]:
            if header == b"content-length":
                if not value.isdigit() or int(value) > self.limit:
                    await send_error(send, RequestTooLarge(self.limit))
                    return
                held = int(value)
                break
        if held and (refusal := self.budget.take(name, held)):
            await send_error(send, refusal)
            return
        received = 0
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        response_started = False
        in_lane = False
        body_done = False

        async def limited_receive() -> Message:
            nonlocal received, held, in_lane, body_done
            if body_done:
                # The body is in: what is left to receive is the disconnect, which a
                # streamed answer waits for as long as it runs (no body deadline).
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    if not in_lane and max(held, received) > LARGE_BYTES:
                        await self.lanes.acquire(name, 1)
                        in_lane = True
                    message = await receive()
            except TimeoutError:
                raise _Refused(RequestTimeout(self.timeout_s)) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _Refused(RequestTooLarge(self.limit))
                if received > held:  # no Content-Length: held as it arrives
                    if refusal := self.budget.take(name, received - held, held):
                        raise _Refused(refusal)
                    held = received
                if not message.get("more_body", False):
                    body_done = True
                    if in_lane:
                        in_lane = False  # all in: the next large body may come
                        self.lanes.release(name)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _Refused as refused:
            if not response_started:
                await send_error(send, refused.error)
        finally:
            if in_lane:
                self.lanes.release(name)
            if held:
                self.budget.give(name, held)


class _Refused(Exception):
    def __init__(self, error: ControllerError) -> None:
        super().__init__(error.message)
        self.error = error
