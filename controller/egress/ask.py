"""The ask-callback: the operator's webhook decides names that are neither allowed nor denied.

NETWORK_ASK_URL receives ``POST {executionId, host, port, labels}`` and answers
``{"allow": true}`` or ``{"allow": false}``; anything else (an error, another status, a
body that says neither, no answer within NETWORK_ASK_TIMEOUT_MS) is a no.  The answer is
kept for the rest of the execution: a name is asked once per execution.  The webhook is
reached as uploads are (controller.uploads.transport): the address it resolves to is
checked and connected to, never a metadata or link-local one, and no redirect is
followed.  It may be private: it is the operator's own, named in the settings.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import httpx

from controller.uploads.policy import UploadPolicy
from controller.uploads.transport import GuardedTransport

log = logging.getLogger(__name__)

Ask = Callable[[str, str, int], Awaitable[bool]]
"""(execution id, name, port) -> whether the connection may go."""


class AskCallback:
    def __init__(self, url: str, timeout_ms: int) -> None:
        target = httpx.URL(url)
        port = target.port or (443 if target.scheme == "https" else 80)
        policy = UploadPolicy(frozenset({(target.host.lower(), port)}))
        self.url = url
        self.timeout_s = timeout_ms / 1000
        self._client = httpx.AsyncClient(
            transport=GuardedTransport(policy, 16), timeout=self.timeout_s, follow_redirects=False
        )

    async def __call__(self, execution_id: str, host: str, port: int) -> bool:
        body = {"executionId": execution_id, "host": host, "port": port, "labels": {}}
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await self._client.post(self.url, json=body)
            answer = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError, TimeoutError) as exc:
            log.warning("ask-callback for %s:%d failed, denied: %s", host, port, exc or "timeout")
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
