"""What happens to the files a run wrote: returned inline, or uploaded to a file service."""

from __future__ import annotations

import binascii

import httpx
from runner.contract import Harvested

from controller.execution.models import Inline, SkippedFile, Upload
from controller.uploads.client import upload_files


def skipped_from(harvested: Harvested) -> list[SkippedFile]:
    """What the collection inside the sandbox passed over, reported rather than dropped."""
    skipped = [SkippedFile(name=s.path, size=s.size, reason=s.reason) for s in harvested.skipped]
    if harvested.error:
        skipped.append(SkippedFile(name="*", size=None, reason="collection_failed"))
    return skipped


def inline(harvested: Harvested, max_inline_bytes: int) -> tuple[list[Inline], list[SkippedFile]]:
    """Files in the response, in path order, until MAX_INLINE_BYTES; the rest are skipped."""
    files, skipped, total = [], skipped_from(harvested), 0
    for item in harvested.files:
        size = len(item.content)
        if total + size > max_inline_bytes:
            skipped.append(SkippedFile(name=item.path, size=size, reason="inline_limit"))
            continue
        total += size
        files.append(Inline(item.path, size, binascii.b2a_base64(item.content, newline=False)))
    return files, skipped


async def upload(
    harvested: Harvested,
    client: httpx.AsyncClient,
    url: str,
    token: str | None,
    public: bool,
    concurrency: int,
    timeout_s: float,
) -> tuple[list[Upload], list[SkippedFile]]:
    sent = await upload_files(client, url, token, public, harvested.files, concurrency, timeout_s)
    uploads = [Upload(filename=s.filename, url=s.url, status=s.status) for s in sent]
    return uploads, skipped_from(harvested)
