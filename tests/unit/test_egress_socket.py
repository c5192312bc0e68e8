"""An execution's egress socket (runner.egress.EgressSocket) holds at most its cap open."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from runner.egress import EgressSocket
from runner.policy import EGRESS_SOCKET

pytestmark = pytest.mark.unit


class Holding(EgressSocket):
    """Keeps every connection open until the socket closes."""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.Event().wait()


async def test_connections_beyond_the_cap_are_closed_as_they_arrive(tmp_path: Path) -> None:
    egress = Holding(max_connections=1)  # twice as many may be open
    await egress.open(tmp_path, None)
    path = str(tmp_path / EGRESS_SOCKET)
    clients = [await asyncio.open_unix_connection(path) for _ in range(3)]
    third_reader = clients[2][0]
    assert await asyncio.wait_for(third_reader.read(), 5) == b""  # closed at once
    for reader, _ in clients[:2]:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(), 0.2)  # still held
    await egress.close()
    for reader, _ in clients[:2]:
        assert await asyncio.wait_for(reader.read(), 5) == b""
    for _, writer in clients:
        writer.close()
