"""One execution's way out: a Unix socket in a directory bound into its sandbox, served here.

The socket is the execution's identity: only its sandbox has the directory mounted, so
every connection that arrives on it is that execution's, under that execution's gate,
whatever the code inside claims.  The sandbox's stub forwards its loopback proxy port
to it (runner.policy.EGRESS_PORT).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from runner.policy import EGRESS_SOCKET

from controller.egress.gate import EgressGate
from sandbox_common import forward_proxy

REFUSED_HEADER = "X-Sandbox-Proxy-Refused"


class EgressChannel:
    def __init__(self, gate: EgressGate) -> None:
        self.gate = gate
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()

    async def open(self, directory: Path, group: int | None) -> None:
        """Serve on ``directory``/EGRESS_SOCKET; ``group`` (the sandboxes' host gid, when
        this service is root) may connect, nobody else but this service's user."""
        path = directory / EGRESS_SOCKET
        self._server = await asyncio.start_unix_server(
            self._serve, path=str(path), limit=forward_proxy.HEAD_LIMIT
        )
        if group is not None:
            os.chown(path, -1, group)
        os.chmod(path, 0o660 if group is not None else 0o600)

    async def close(self) -> None:
        """Stop serving and end every connection still open (the execution is over)."""
        if self._server is not None:
            self._server.close()
        for task in list(self._clients):
            task.cancel()
        if self._clients:
            await asyncio.wait(set(self._clients), timeout=5)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            await forward_proxy.serve(
                reader, writer, self.gate, refused_header=REFUSED_HEADER, meter=self.gate.meter
            )
        finally:
            self._clients.discard(task)
