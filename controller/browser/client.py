"""The HTTP client of the browser agents; its failures become the product's errors here.

ConnectError -> 502, timeout -> 504, another transport failure -> 502; an agent's own
error (JSON in the product's shape, e.g. 409 element_timeout) is passed on as it came,
except a 401, which means the controller and the agent disagree: a platform failure.

An agent runs Chromium on arbitrary pages, so its replies are untrusted input: each is
read under one deadline for the whole reply (not per read: a pod that trickles a byte
at a time is cut off) and up to a size; JSON replies are decoded strictly (``reply_json``,
``reply_model``), and anything malformed is a 502.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import logging
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from controller.browser.backend import AgentHandle
from controller.errors import AgentRefused, BadGateway, GatewayTimeout, MalformedReply
from controller.replies import IDENTITY, ReplyTooLarge, ReplyUndecodable, read_capped

CONNECT_TIMEOUT_S = 5.0
# One log line per agent call is noise next to the access log of the call itself.
logging.getLogger("httpx").setLevel(logging.WARNING)
DEFAULT_TIMEOUT_S = 30.0
PASSED_STATUSES = frozenset({400, 403, 404, 409, 422, 502, 504})
MAX_REPLY_BYTES = 64 * 1024 * 1024
"""The most of one agent reply held in memory (a full-page screenshot is the largest)."""
SMALL_REPLY_BYTES = 64 * 1024
"""Enough for any reply but content and screenshots (health, tabs, actions, errors)."""

FRAMING_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})

Model = TypeVar("Model", bound=BaseModel)


class AgentClient:
    """One connection pool for every agent; the session token goes with each request."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        # trust_env=False: the service's HTTP(S)_PROXY must never reroute agent traffic.
        self._http = httpx.AsyncClient(
            transport=transport,
            trust_env=False,
            timeout=httpx.Timeout(DEFAULT_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def request(
        self,
        agent: AgentHandle,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_bytes: int = MAX_REPLY_BYTES,
    ) -> httpx.Response:
        """The agent's reply, read whole (at most ``max_bytes``) within ``timeout_s``."""
        try:
            async with asyncio.timeout(timeout_s):
                async with self._http.stream(
                    method,
                    agent.endpoint + path,
                    json=json,
                    params=params,
                    headers={**IDENTITY, "Authorization": f"Bearer {agent.token}"},
                    timeout=httpx.Timeout(timeout_s, connect=CONNECT_TIMEOUT_S),
                ) as streamed:
                    content = await read_capped(streamed, max_bytes)
        except ReplyTooLarge as exc:
            raise BadGateway(f"browser agent's reply is {exc}") from None
        except ReplyUndecodable as exc:
            raise MalformedReply(f"browser agent's reply: {exc}") from None
        except TimeoutError as exc:
            raise GatewayTimeout(f"browser agent did not answer within {timeout_s:.0f}s") from exc
        except httpx.ConnectError as exc:
            raise BadGateway(f"browser agent unreachable: {exc}") from exc
        except httpx.TimeoutException as exc:
            raise GatewayTimeout(
                f"browser agent did not answer within {timeout_s:.0f}s ({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            raise BadGateway(f"browser agent failed: {type(exc).__name__}: {exc}") from exc
        # The body is decoded already: no header may make httpx decode it again.
        headers = [(k, v) for k, v in streamed.headers.items() if k not in FRAMING_HEADERS]
        response = httpx.Response(
            streamed.status_code,
            headers=headers,
            content=content,
            request=streamed.request,
        )
        if response.status_code >= 400:
            raise agent_error(response)
        return response


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def reply_json(response: httpx.Response) -> Any:
    """The reply's JSON, strictly (no NaN or Infinity); a 502 when it is not JSON."""
    try:
        return jsonlib.loads(response.content, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise MalformedReply(f"browser agent answered malformed JSON: {exc}"[:300]) from None


def reply_object(response: httpx.Response) -> dict[str, Any]:
    """The reply's JSON object; a 502 when it is anything else."""
    body = reply_json(response)
    if not isinstance(body, dict):
        raise MalformedReply("browser agent answered JSON that is not an object")
    return body


def reply_model(response: httpx.Response, model: type[Model]) -> Model:
    """The reply validated as ``model``; a 502 naming the mismatch when it is not one."""
    try:
        return model.model_validate(reply_object(response))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise MalformedReply(
            f"browser agent answered an invalid {model.__name__} ({where}: {first['msg']})"[:300]
        ) from None


def agent_error(response: httpx.Response) -> AgentRefused | BadGateway:
    """An agent's error response as the product's error (validated: the agent is untrusted)."""
    status = response.status_code
    if status == 401:
        return BadGateway("browser agent refused the session token")
    try:
        body = reply_json(response)
    except MalformedReply:
        body = None
    if status not in PASSED_STATUSES or not isinstance(body, dict):
        return BadGateway(f"browser agent answered {status}")
    code = body.get("error")
    message = body.get("message")
    details = body.get("details")
    if not isinstance(code, str) or not isinstance(message, str):
        return BadGateway(f"browser agent answered {status}")
    clean: list[dict[str, str]] | None = None
    if isinstance(details, list):
        clean = [
            {k: str(d.get(k, ""))[:2000] for k in ("field", "rule", "message")}
            for d in details[:20]
            if isinstance(d, dict)
        ]
    return AgentRefused(status, code[:64], message[:16_000], clean)
