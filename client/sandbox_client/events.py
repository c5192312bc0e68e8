"""A streamed run's events (Server-Sent Events), read into the client's records.

The service sends ``stdout``/``stderr`` (``Output``), ``result`` (``Result``) and
``violation`` (``Violation``) as they happen, then ``done`` with the whole answer (the
last item: an ``ExecutionResult``, or a ``ContextResult`` for a context's call), or
``error`` when the platform failed after the run began (raised as ``ApiError``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import httpx

from sandbox_client.errors import SandboxClientError, api_error
from sandbox_client.models import ExecutionResult, Output, Result, Violation

R = TypeVar("R", bound=ExecutionResult)
Event = Output | Result | Violation | ExecutionResult


async def events_of(
    response: httpx.Response, last: Callable[[dict[str, Any]], R]
) -> AsyncIterator[Output | Result | Violation | R]:
    """The events of a streamed answer, each as it arrives; ``last`` reads ``done``."""
    name = ""
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            name = line[len("event: ") :]
            continue
        if not line.startswith("data: "):
            continue  # the blank line between events, a keep-alive comment
        data = json.loads(line[len("data: ") :])
        if name in ("stdout", "stderr"):
            yield Output(name, str(data["text"]), data.get("timestamp"))
        elif name == "result":
            yield Result(str(data["type"]), str(data["data"]), int(data["display"]))
        elif name == "violation":
            yield Violation(data["kind"], data["target"], data["detail"])
        elif name == "done":
            yield last(data)
            return
        elif name == "error":
            raise api_error(int(data.pop("status", 500)), data, str(data.get("message", "")))
    raise SandboxClientError("the stream ended before the run's last event")
