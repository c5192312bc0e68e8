"""Reading the replies of what the controller places (runner pods, browser agents), capped.

Both run untrusted code, so a reply is held in memory only up to a size its caller
names; the bytes are counted after any content decoding, so a compressed reply cannot
grow past the cap either.
"""

from __future__ import annotations

import httpx


class ReplyTooLarge(Exception):
    """The reply is over the cap (the caller says what that means for it)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"over {max_bytes} bytes")
        self.max_bytes = max_bytes


async def read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    """The whole body of a streamed ``response``; ReplyTooLarge past ``max_bytes``."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise ReplyTooLarge(max_bytes)  # refused before a byte is read
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise ReplyTooLarge(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)
