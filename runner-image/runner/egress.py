"""A runner pod's way out: the sandbox's egress socket, relayed to the egress proxy.

In a runner pod the proxy is a Deployment of its own (the pod's NetworkPolicy lets it
reach that and nothing else).  The sandbox's stub forwards its loopback proxy port to
the socket in the sandbox's egress directory; this relay serves that socket and, for
each connection, keeps the execution's account (caps, bytes, refusals), adds the
execution's grant as ``Proxy-Authorization`` and relays the rest unchanged.  The proxy
answers a refusal with its refusal header, which the relay reads from the first
response head and records: the refusal becomes a ``network`` violation of the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from dataclasses import replace
from pathlib import Path

from runner.contract import Denial, EgressGrant, NetworkUsage, Outcome
from runner.policy import EGRESS_SOCKET
from sandbox_common import forward_proxy
from sandbox_common.egress_account import REFUSED_HEADER, EgressAccount
from sandbox_common.forward_proxy import CONNECT_TIMEOUT_S, HEAD_LIMIT, HEAD_TIMEOUT_S


def sandbox_group(host_ids: tuple[int, int]) -> int | None:
    """The host gid sandboxes run as when this process is root (runner.launch launches
    them so); None: they run as this process's own user, which owns the socket."""
    return host_ids[1] if os.geteuid() == 0 else None


def new_egress_dir(parent: Path, group: int | None) -> Path:
    """An empty directory for one sandbox's egress socket, that its bubblewrap can mount."""
    directory = Path(tempfile.mkdtemp(prefix="egress-", dir=parent))
    if group is not None:
        os.chown(directory, -1, group)
        directory.chmod(0o750)
    return directory


def with_egress(outcome: Outcome, account: EgressAccount) -> Outcome:
    """``outcome`` with what the execution's account saw: refusals and bytes."""
    refused = tuple(Denial("network", r.target, r.reason) for r in account.refusals)
    usage = NetworkUsage(account.connections, account.meter.sent, account.meter.received)
    return replace(outcome, denials=outcome.denials + refused, network=usage)


OPEN_PER_CONNECTION_CAP = 2


class EgressSocket:
    """One execution's egress socket, served here; ``handle`` serves each connection.

    Only this process's user and ``group`` (the sandbox's host gid, when this process
    is root) may connect.  ``close`` ends every connection still open: the execution
    is over.
    """

    def __init__(self, max_connections: int) -> None:
        """Connections open at once are bounded by the execution's cap: twice it, since
        one the client has closed may still be finishing here (its refusal beyond the
        cap is the account's business, with a reason).  More are closed as they arrive:
        each holds a descriptor of this process, which serves more than this execution."""
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self._max_open = OPEN_PER_CONNECTION_CAP * max_connections

    async def open(self, directory: Path, group: int | None) -> None:
        path = directory / EGRESS_SOCKET
        self._server = await asyncio.start_unix_server(
            self._serve, path=str(path), limit=HEAD_LIMIT
        )
        if group is not None:
            os.chown(path, -1, group)
        os.chmod(path, 0o660 if group is not None else 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._clients):
            task.cancel()
        if self._clients:
            await asyncio.wait(set(self._clients), timeout=5)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._clients) >= self._max_open:
            writer.close()
            return
        self._clients.add(task)
        try:
            await self.handle(reader, writer)
        finally:
            self._clients.discard(task)
            writer.close()


class EgressRelay(EgressSocket):
    """A runner pod's egress socket: every connection goes on to the proxy, with the grant."""

    def __init__(self, grant: EgressGrant) -> None:
        super().__init__(grant.max_connections)
        self.grant = grant
        self.account = EgressAccount(grant.max_connections, grant.max_bytes)
        host, _, port = grant.proxy.rpartition(":")
        self._proxy = (host.strip("[]"), int(port))

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
            await self._relay(head, reader, writer)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        except (ConnectionError, OSError):
            pass

    async def _relay(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        request_line, _, header_block = head.partition(b"\r\n")
        try:
            _, host, port, _ = forward_proxy.request_target(request_line)
        except ValueError as exc:
            await forward_proxy.answer(writer, 400, str(exc))
            return
        target = f"{host}:{port}"
        reason = self.account.admit()
        if reason is not None:
            self.account.refuse(target, reason)
            message = f"{target} refused by the sandbox's network policy: {reason}"
            await forward_proxy.answer(writer, 403, message, refused_header=REFUSED_HEADER)
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(*self._proxy, limit=HEAD_LIMIT), CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError) as exc:
            await forward_proxy.answer(writer, 502, f"the egress proxy is unreachable: {exc}")
            return
        meter = self.account.meter
        try:
            # The code's own Proxy-Authorization, if any, never reaches the proxy.
            kept = [
                line
                for line in header_block[:-4].split(b"\r\n")
                if line and line.partition(b":")[0].strip().lower() != b"proxy-authorization"
            ]
            credential = f"Proxy-Authorization: Bearer {self.grant.token}".encode()
            up_writer.write(b"\r\n".join([request_line, credential, *kept]) + b"\r\n\r\n")
            meter.count(len(head), upstream=True)

            async def first_answer() -> None:
                """The proxy's answer (or the origin's, through it); a refusal is noted."""
                answer = await asyncio.wait_for(up_reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
                refused = forward_proxy.header_value(
                    answer.partition(b"\r\n")[2], REFUSED_HEADER.lower().encode()
                )
                if refused is not None:
                    self.account.refuse(target, refused.partition(": ")[2] or refused)
                meter.count(len(answer), upstream=False)
                writer.write(answer)
                await writer.drain()

            await forward_proxy.splice(reader, writer, up_reader, up_writer, meter, first_answer)
        finally:
            up_writer.close()
            with contextlib.suppress(Exception):
                await up_writer.wait_closed()
