"""The egress proxy as a process of its own (``python -m controller.egress``): Kubernetes mode.

Runner pods reach it, and nothing else (their NetworkPolicy); it reaches the public
network, and nothing else but NETWORK_INTERNAL_HOSTS (its own).  It keeps no state:
each connection carries its execution's grant (controller.egress.grants), which names
the policy; the caps and the refusals are kept by the runner pod's relay
(runner.egress), where all of the execution's connections pass.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time

from controller.egress.ask import Ask, AskCallback, AskedOnce
from controller.egress.grants import Grant, GrantError, verify
from controller.settings import NetworkRules
from sandbox_common import forward_proxy
from sandbox_common.egress_account import REFUSED_HEADER
from sandbox_common.egress_gate import EgressGate, EgressRules
from sandbox_common.forward_proxy import Gate, Unauthorized, header_value

log = logging.getLogger(__name__)

MAX_OPEN = 4096
"""Connections open at once through one proxy replica, all executions together."""


class GrantGates:
    """The gate of each connection, from the grant it carries.

    With an ask-callback, each execution's answers are kept until its grant expires
    (controller.egress.ask.AskedOnce), whichever connection asked.
    """

    def __init__(self, key: bytes, rules: EgressRules, ask: Ask | None = None) -> None:
        self._key = key
        self._rules = rules
        self._ask = ask
        self._asked: dict[str, tuple[float, AskedOnce]] = {}

    def _asked_for(self, grant: Grant) -> AskedOnce | None:
        if self._ask is None:
            return None
        now = time.time()
        for execution_id, (expires_at, _) in list(self._asked.items()):
            if expires_at < now:
                del self._asked[execution_id]
        entry = self._asked.get(grant.execution_id)
        if entry is None:
            entry = (grant.expires_at, AskedOnce(self._ask, grant.execution_id))
            self._asked[grant.execution_id] = entry
        return entry[1]

    def __call__(self, header_block: bytes) -> Gate:
        value = header_value(header_block, b"proxy-authorization") or ""
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("an egress grant is required (Proxy-Authorization: Bearer)")
        try:
            grant = verify(self._key, token.strip())
        except GrantError as exc:
            raise Unauthorized(str(exc)) from None
        # Each execution's lookups are its own: one whose name server never answers
        # waits on itself, never on the proxy's other executions.
        return EgressGate(
            grant.policy, self._rules, ask=self._asked_for(grant), owner=grant.execution_id
        )


async def serve(rules: NetworkRules, host: str = "0.0.0.0") -> None:  # noqa: S104 - a pod
    if rules.egress_grant_key is None:
        raise SystemExit("EGRESS_GRANT_KEY is required: the key the controller signs grants with")
    ask = None
    if rules.network_ask_url is not None:
        ask = AskCallback(str(rules.network_ask_url), rules.network_ask_timeout_ms)
    gates = GrantGates(
        rules.egress_grant_key.get_secret_value().encode(),
        EgressRules(internal_hosts=rules.network_internal_hosts),
        ask,
    )

    open_now = 0

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal open_now
        if open_now >= MAX_OPEN:  # each runner relay keeps its own execution's cap
            writer.close()
            return
        sock = writer.get_extra_info("socket")
        if sock is not None:  # a runner pod that vanished leaves no half-open connection
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        open_now += 1
        try:
            await forward_proxy.serve(reader, writer, gates, refused_header=REFUSED_HEADER)
        finally:
            open_now -= 1

    server = await asyncio.start_server(
        one, host, rules.egress_proxy_port, limit=forward_proxy.HEAD_LIMIT, reuse_address=True
    )
    log.info("egress proxy listening on %s:%d", host, rules.egress_proxy_port)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    async with server:
        await stopping.wait()
