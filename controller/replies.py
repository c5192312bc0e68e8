"""Replies from what the controller talks to, read within a size, whatever their encoding.

Runner pods and browser agents run untrusted code; file services and the ask-callback
are someone else's.  So every reply is held in memory only up to a size its caller
names, and counted twice: the bytes that arrive, and the bytes they decode to.  Every
request asks for ``identity``; a reply compressed anyway is inflated by a decoder that
stops at the cap (gzip and deflate, the encodings a server may still send unasked),
never by httpx's, which inflates each chunk whole: a 64 KiB chunk of a gzip bomb is
64 MiB, of a brotli one far more.  Any other encoding is refused.  The deadline of the
whole exchange is the caller's (``asyncio.timeout`` around it), never per read.
"""

from __future__ import annotations

import zlib

import httpx

IDENTITY = {"Accept-Encoding": "identity"}
"""The header every request of the controller sends: replies uncompressed, please."""


class ReplyTooLarge(Exception):
    """The reply is over the cap (the caller says what that means for it)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"over {max_bytes} bytes")
        self.max_bytes = max_bytes


class ReplyUndecodable(Exception):
    """The reply is in an encoding nobody asked for and this module does not inflate."""


class _Inflater:
    """gzip or deflate, inflated up to ``max_bytes`` in all."""

    def __init__(self, encoding: str, max_bytes: int) -> None:
        self.room = self.max_bytes = max_bytes
        self._gzip = encoding in ("gzip", "x-gzip")
        self._inflate = zlib.decompressobj(zlib.MAX_WBITS | 16 if self._gzip else zlib.MAX_WBITS)
        self._first = True

    def feed(self, data: bytes) -> bytes:
        first, self._first = self._first, False
        try:
            # At most one byte past the room: a reply that would inflate further ends here.
            out = self._inflate.decompress(data, self.room + 1)
        except zlib.error:
            if not first or self._gzip:
                raise ReplyUndecodable("the reply's compressed body is corrupt") from None
            # deflate is zlib-wrapped by the standard, sent raw by some servers.
            self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
            return self.feed(data)
        if len(out) > self.room:
            raise ReplyTooLarge(self.max_bytes)
        self.room -= len(out)
        return out


async def read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    """The whole body of a streamed ``response``, decoded; ReplyTooLarge past ``max_bytes``
    (arrived or decoded), ReplyUndecodable for an encoding other than gzip or deflate."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise ReplyTooLarge(max_bytes)  # refused before a byte is read
    if response.is_stream_consumed:  # an answer made in memory (httpx.MockTransport)
        if len(response.content) > max_bytes:
            raise ReplyTooLarge(max_bytes)
        return response.content
    encodings = [
        e.strip().lower()
        for e in response.headers.get("content-encoding", "").split(",")
        if e.strip().lower() not in ("", "identity")
    ]
    if len(encodings) > 1 or (encodings and encodings[0] not in ("gzip", "x-gzip", "deflate")):
        raise ReplyUndecodable(f"the reply is encoded as {', '.join(encodings)}, not asked for")
    inflater = _Inflater(encodings[0], max_bytes) if encodings else None
    chunks: list[bytes] = []
    arrived = size = 0
    async for chunk in response.aiter_raw():
        arrived += len(chunk)
        if arrived > max_bytes:  # what arrives counts as well as what it decodes to
            raise ReplyTooLarge(max_bytes)
        if inflater is not None:
            chunk = inflater.feed(chunk)
        size += len(chunk)
        if size > max_bytes:
            raise ReplyTooLarge(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)
