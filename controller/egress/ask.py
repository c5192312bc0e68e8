"""The ask-callback: the operator's webhook decides names that are neither allowed nor denied.

NETWORK_ASK_URL receives ``POST {executionId, host, port, labels}`` and answers
``{"allow": true}`` or ``{"allow": false}``; anything else (an error, another status, a
body that says neither, no answer within NETWORK_ASK_TIMEOUT_MS) is a no.  The answer is
kept for the rest of the execution: a name is asked once per execution.  The webhook is
reached as uploads are (controller.uploads.transport): the address it resolves to is
checked and connected to, never a metadata or link-local one, and no redirect is
followed.  It may be private: it is the operator's own, named in the settings.  Its
answer is read within MAX_ANSWER_BYTES, whatever it is encoded as, and by the deadline.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

import httpx

from controller.replies import IDENTITY, ReplyTooLarge, ReplyUndecodable, read_capped
from controller.uploads.policy import UploadPolicy
from controller.uploads.transport import GuardedTransport

log = logging.getLogger(__name__)

Ask = Callable[[str, str, int], Awaitable[bool]]
"""(execution id, name, port) -> whether the connection may go."""
MAX_ANSWER_BYTES = 4096
"""``{"allow": true}`` is 15 bytes: an answer longer than this is not one."""


class AskCallback:
    def __init__(self, url: str, timeout_ms: int) -> None:
        target = httpx.URL(url)
        port = target.port or (443 if target.scheme == "https" else 80)
        policy = UploadPolicy(frozenset({(target.host.lower(), port)}))
        self.url = url
        self.timeout_s = timeout_ms / 1000
        self._client = httpx.AsyncClient(
            transport=GuardedTransport(policy, 16, owner="ask-callback"),
            timeout=self.timeout_s,
            follow_redirects=False,
            headers=IDENTITY,
        )

    async def __call__(self, execution_id: str, host: str, port: int) -> bool:
        body = {"executionId": execution_id, "host": host, "port": port, "labels": {}}
        try:
            async with (
                asyncio.timeout(self.timeout_s),
                self._client.stream("POST", self.url, json=body) as response,
            ):
                raw = await read_capped(response, MAX_ANSWER_BYTES)
            answer = json.loads(raw) if response.status_code == 200 else None
        except (
            httpx.HTTPError,
            ValueError,
            RecursionError,
            TimeoutError,
            ReplyTooLarge,
            ReplyUndecodable,
        ) as exc:
            why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            log.warning("ask-callback for %s:%d failed, denied: %s", host, port, why)
            return False
        return isinstance(answer, dict) and answer.get("allow") is True

    async def close(self) -> None:
        await self._client.aclose()


class AskedOnce:
    """One execution's answers: each name and port is asked at most once."""

    def __init__(self, ask: Ask, execution_id: str) -> None:
        self._ask = ask
        self._execution_id = execution_id
        self._answers: dict[tuple[str, int], asyncio.Future[bool]] = {}

    async def __call__(self, name: str, port: int) -> bool:
        key = (name, port)
        if key not in self._answers:  # concurrent connections to one name share one ask
            self._answers[key] = asyncio.ensure_future(self._ask(self._execution_id, name, port))
        return await asyncio.shield(self._answers[key])
