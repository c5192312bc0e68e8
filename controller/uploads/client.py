"""Sends harvested files to the caller's file service, one multipart request per file."""

from __future__ import annotations

import asyncio
import mimetypes

import httpx
from runner.protocol import HarvestedFile

from controller.execution.models import Upload


async def upload_files(
    client: httpx.AsyncClient,
    url: str,
    token: str | None,
    public: bool,
    files: list[HarvestedFile],
    concurrency: int,
) -> list[Upload]:
    """Upload each file; a failed upload is reported in its entry and never stops the others."""
    slots = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def one(item: HarvestedFile) -> Upload:
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
                return Upload(
                    filename=item.path, url=None, status=f"error: {type(exc).__name__}: {exc}"[:300]
                )
        return Upload(filename=item.path, url=_url_from(response), status=response.status_code)

    return list(await asyncio.gather(*(one(item) for item in files)))


def _url_from(response: httpx.Response) -> str | None:
    """The stored file's URL, when the file service answers JSON with a string ``url``."""
    try:
        body = response.json()
    except ValueError:
        return None
    url = body.get("url") if isinstance(body, dict) else None
    return url if isinstance(url, str) else None
