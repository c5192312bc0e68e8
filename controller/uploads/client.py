"""Sends harvested files to the caller's file service, one multipart request per file."""

from __future__ import annotations

import asyncio
import mimetypes
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
from runner.contract import HarvestedFile


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
) -> list[Sent]:
    """Upload each file; a failed upload is reported in its entry and never stops the others."""
    slots = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def one(item: HarvestedFile) -> Sent:
        content_type = mimetypes.guess_type(item.path)[0] or "application/octet-stream"
        async with slots:
            try:
                response = await client.post(
                    url,
                    headers=headers,
                    data={"public": "true" if public else "false"},
                    files={"file": (item.path, item.content, content_type)},
                )
            except httpx.HTTPError as exc:
                return Sent(item.path, None, f"error: {type(exc).__name__}: {exc}"[:300])
        return Sent(item.path, _url_from(response), response.status_code)

    return list(await asyncio.gather(*(one(item) for item in files)))


def _url_from(response: httpx.Response) -> str | None:
    """The stored file's URL, when the file service answers JSON with a string ``url``."""
    try:
        body = response.json()
    except ValueError:
        return None
    url = body.get("url") if isinstance(body, dict) else None
    return url if isinstance(url, str) else None
