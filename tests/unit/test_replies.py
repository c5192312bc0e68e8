"""Replies read within a size whatever their encoding, and name lookups bounded per owner."""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading
import zlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from controller.replies import ReplyTooLarge, ReplyUndecodable, read_capped
from sandbox_common.resolver import LookupFailed, Resolver
from tests.support import until

MIB = 1024 * 1024


class Chunks(httpx.AsyncByteStream):
    def __init__(self, data: bytes, size: int = 65536) -> None:
        self.data, self.size = data, size

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i in range(0, len(self.data), self.size):
            yield self.data[i : i + self.size]


def streamed(data: bytes, **headers: str) -> httpx.Response:
    return httpx.Response(200, headers=headers, stream=Chunks(data))


def raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


@pytest.mark.parametrize(
    ("encoding", "pack"),
    [("gzip", gzip.compress), ("deflate", zlib.compress), ("deflate", raw_deflate)],
)
async def test_a_compressed_reply_is_inflated_up_to_the_cap_and_no_further(
    encoding: str, pack: Any
) -> None:
    assert (
        await read_capped(streamed(pack(b"hello " * 100), **{"content-encoding": encoding}), 1000)
        == b"hello " * 100
    )
    bomb = pack(bytes(64 * MIB))  # 64 KiB that inflate to 64 MiB
    with pytest.raises(ReplyTooLarge):
        await read_capped(streamed(bomb, **{"content-encoding": encoding}), 64 * 1024)


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "gzip, gzip"])
async def test_encodings_nobody_asked_for_are_refused(encoding: str) -> None:
    with pytest.raises(ReplyUndecodable):
        await read_capped(streamed(b"x", **{"content-encoding": encoding}), 1000)


async def test_what_arrives_counts_whatever_it_claims() -> None:
    assert await read_capped(streamed(b"x" * 1000), 1000) == b"x" * 1000
    with pytest.raises(ReplyTooLarge):
        await read_capped(streamed(b"x" * 1001), 1000)
    with pytest.raises(ReplyTooLarge):  # refused by its header before a byte is read
        await read_capped(streamed(b"", **{"content-length": "1001"}), 1000)


async def test_a_slow_name_server_holds_its_owner_alone() -> None:
    release = threading.Event()

    def lookup(host: str, port: int, **_: object) -> list[tuple[Any, ...]]:
        if host.startswith("slow"):
            release.wait(10)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", port))]

    resolver = Resolver(threads=8, per_owner=2, timeout_s=0.2, lookup=lookup)
    try:
        for _ in range(2):
            with pytest.raises(LookupFailed, match=r"did not resolve within 0\.2 s"):
                await resolver.getaddrinfo("slow.example", 443, "attacker")
        # Its two lookups still hold their threads: its next one, even of a fast name,
        # waits its turn, and gives up at the deadline ...
        assert resolver.busy("attacker") == 2
        with pytest.raises(LookupFailed):
            await resolver.getaddrinfo("fast.example", 443, "attacker")
        # ... while another owner's lookups go on as ever.
        found = await resolver.getaddrinfo("fast.example", 443, "victim")
        assert found[0][4] == ("192.0.2.1", 443)
        release.set()
        await until(lambda: resolver.busy("attacker") == 0, what="the slow lookups returned")
        assert await resolver.getaddrinfo("fast.example", 443, "attacker")
    finally:
        release.set()
        resolver.close()


async def test_lookups_beyond_an_owners_share_wait_their_turn() -> None:
    gate = threading.Event()

    def lookup(host: str, port: int, **_: object) -> list[tuple[Any, ...]]:
        gate.wait(5)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", port))]

    resolver = Resolver(threads=8, per_owner=2, timeout_s=5, lookup=lookup)
    try:
        many = [
            asyncio.ensure_future(resolver.getaddrinfo(f"n{i}.example", 443, "page"))
            for i in range(6)
        ]
        await until(lambda: resolver.busy("page") == 2, what="two lookups under way")
        assert not any(lookup.done() for lookup in many)
        gate.set()
        assert len(await asyncio.gather(*many)) == 6  # every one had its turn
    finally:
        gate.set()
        resolver.close()


async def test_owners_whose_name_servers_never_answer_leave_threads_to_others() -> None:
    release = threading.Event()

    def lookup(host: str, port: int, **_: object) -> list[tuple[Any, ...]]:
        if host.startswith("slow"):
            release.wait(10)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", port))]

    resolver = Resolver(per_owner=2, timeout_s=0.5, lookup=lookup)  # the default threads
    try:
        attacks = [
            resolver.getaddrinfo(f"slow{i}.example", 443, f"attacker-{owner}")
            for owner in range(40)
            for i in range(2)
        ]
        outcomes = await asyncio.gather(*attacks, return_exceptions=True)
        assert all(isinstance(o, LookupFailed) for o in outcomes)
        # Eighty threads still blocked, forty owners' caps full: the next owner resolves.
        found = await resolver.getaddrinfo("fast.example", 443, "victim")
        assert found[0][4] == ("192.0.2.1", 443)
    finally:
        release.set()
        resolver.close()
