"""Sends harvested files to the caller's file service, one multipart request per file.

The file service is the caller's: its replies are read within MAX_REPLY_BYTES whatever
they claim or are encoded as (controller.replies), and every upload of an execution
must be over by one deadline, however slowly the service reads or answers.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
from runner.contract import HarvestedFile

from controller.replies import IDENTITY, ReplyTooLarge, ReplyUndecodable, read_capped

MAX_REPLY_BYTES = 64 * 1024
"""Of a file service's reply, only a JSON ``url`` is read: more is not kept."""


@dataclass(frozen=True)
class Sent:
    """How one file's upload ended: the HTTP status, or an error string."""

    filename: str
    url: str | None
    status: int | str


async def upload_files(
    client: httpx.AsyncClient,
    url: str,
    token: str | None,
    public: bool,
    files: Sequence[HarvestedFile],
    concurrency: int,
    timeout_s: float,
) -> list[Sent]:
    """Upload each file, all within ``timeout_s``; a failed upload is reported in its entry
    and never stops the others."""
    slots = asyncio.Semaphore(concurrency)
    headers = {**IDENTITY, **({"Authorization": f"Bearer {token}"} if token else {})}
    deadline = asyncio.get_running_loop().time() + timeout_s

    async def one(item: HarvestedFile) -> Sent:
        content_type = mimetypes.guess_type(item.path)[0] or "application/octet-stream"
        status: int | None = None
        try:
            async with (
                slots,
                asyncio.timeout_at(deadline),
                client.stream(
                    "POST",
                    url,
                    headers=headers,
                    data={"public": "true" if public else "false"},
                    files={"file": (item.path, item.content, content_type)},
                ) as response,
            ):
                status = response.status_code
                reply = await read_capped(response, MAX_REPLY_BYTES)
        except TimeoutError:
            why = f"no answer within {timeout_s:g} s (setting UPLOAD_TIMEOUT_S)"
            return Sent(item.path, None, status if status is not None else f"error: {why}")
        except (ReplyTooLarge, ReplyUndecodable):
            assert status is not None  # raised while reading the body
            return Sent(item.path, None, status)  # stored, it said; what it said is not read
        except httpx.HTTPError as exc:
            return Sent(item.path, None, f"error: {type(exc).__name__}: {exc}"[:300])
        return Sent(item.path, _url_from(reply), status)

    return list(await asyncio.gather(*(one(item) for item in files)))


def _url_from(reply: bytes) -> str | None:
    """The stored file's URL, when the file service answers JSON with a string ``url``."""
    try:
        body = json.loads(reply)
    except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
        return None
    url = body.get("url") if isinstance(body, dict) else None
    return url if isinstance(url, str) else None
