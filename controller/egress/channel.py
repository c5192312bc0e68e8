"""One execution's way out: a Unix socket in a directory bound into its sandbox, served here.

The socket is the execution's identity: only its sandbox has the directory mounted, so
every connection that arrives on it is that execution's, under that execution's gate,
whatever the code inside claims.  The sandbox's stub forwards its loopback proxy port
to it (runner.policy.EGRESS_PORT).
"""

from __future__ import annotations

import asyncio

from runner.egress import EgressSocket

from sandbox_common import forward_proxy
from sandbox_common.egress_account import REFUSED_HEADER
from sandbox_common.egress_gate import EgressGate


class EgressChannel(EgressSocket):
    """A local execution's egress socket, served by the proxy in this process."""

    def __init__(self, gate: EgressGate, max_connections: int) -> None:
        super().__init__(max_connections)
        self.gate = gate

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        gate = self.gate
        meter = gate.account.meter if gate.account is not None else None
        await forward_proxy.serve(
            reader, writer, lambda _head: gate, refused_header=REFUSED_HEADER, meter=meter
        )
