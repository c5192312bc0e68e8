"""The HTTP client of the browser agents; its failures become the product's errors here.

ConnectError -> 502, timeout -> 504, another transport failure -> 502; an agent's own
error (JSON in the product's shape, e.g. 409 element_timeout) is passed on as it came,
except a 401, which means the controller and the agent disagree: a platform failure.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from controller.browser.backend import AgentHandle
from controller.errors import AgentRefused, BadGateway, GatewayTimeout

CONNECT_TIMEOUT_S = 5.0
# One log line per agent call is noise next to the access log of the call itself.
logging.getLogger("httpx").setLevel(logging.WARNING)
DEFAULT_TIMEOUT_S = 30.0
PASSED_STATUSES = frozenset({400, 403, 404, 409, 422, 502, 504})


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
    ) -> httpx.Response:
        try:
            response = await self._http.request(
                method,
                agent.endpoint + path,
                json=json,
                params=params,
                headers={"Authorization": f"Bearer {agent.token}"},
                timeout=httpx.Timeout(timeout_s, connect=CONNECT_TIMEOUT_S),
            )
        except httpx.ConnectError as exc:
            raise BadGateway(f"browser agent unreachable: {exc}") from exc
        except httpx.TimeoutException as exc:
            raise GatewayTimeout(
                f"browser agent did not answer within {timeout_s:.0f}s ({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            raise BadGateway(f"browser agent failed: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            raise agent_error(response)
        return response


def agent_error(response: httpx.Response) -> AgentRefused | BadGateway:
    """An agent's error response as the product's error (validated: the agent is untrusted)."""
    status = response.status_code
    if status == 401:
        return BadGateway("browser agent refused the session token")
    try:
        body = response.json()
    except ValueError:
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
