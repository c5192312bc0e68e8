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

from controller.egress.gate import EgressGate, EgressRules
from controller.egress.grants import GrantError, verify
from controller.settings import NetworkRules
from sandbox_common import forward_proxy
from sandbox_common.egress_account import REFUSED_HEADER
from sandbox_common.forward_proxy import Gate, Unauthorized, header_value

log = logging.getLogger(__name__)


class GrantGates:
    """The gate of each connection, from the grant it carries."""

    def __init__(self, key: bytes, rules: EgressRules) -> None:
        self._key = key
        self._rules = rules

    def __call__(self, header_block: bytes) -> Gate:
        value = header_value(header_block, b"proxy-authorization") or ""
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("an egress grant is required (Proxy-Authorization: Bearer)")
        try:
            grant = verify(self._key, token.strip())
        except GrantError as exc:
            raise Unauthorized(str(exc)) from None
        return EgressGate(grant.policy, self._rules)


async def serve(rules: NetworkRules, host: str = "0.0.0.0") -> None:  # noqa: S104 - a pod
    if rules.egress_grant_key is None:
        raise SystemExit("EGRESS_GRANT_KEY is required: the key the controller signs grants with")
    gates = GrantGates(
        rules.egress_grant_key.get_secret_value().encode(),
        EgressRules(internal_hosts=rules.network_internal_hosts),
    )

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await forward_proxy.serve(reader, writer, gates, refused_header=REFUSED_HEADER)

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
