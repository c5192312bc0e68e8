"""An httpx transport that checks every address it connects to against the upload policy.

Checking the URL before the run is not enough: a name can resolve to a public address
at check time and to a private one at connection time (DNS rebinding).  The network
backend here resolves the name itself, refuses forbidden addresses, and connects to the
address it checked; TLS still verifies the certificate against the host name.  Names
are resolved by sandbox_common.resolver, as the caller whose upload it is: never in
the executor that starts sandboxes, never more than a few at once for one caller.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from controller.uploads.policy import UploadPolicy
from sandbox_common import resolver


class RefusedTarget(httpcore.ConnectError):
    """The policy refused every address of the target."""


class GuardedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, policy: UploadPolicy, owner: str) -> None:
        self._policy = policy
        self._owner = owner
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        refusal = self._policy.host_refusal(host, port)
        if refusal:
            raise RefusedTarget(refusal)
        try:
            infos = await resolver.shared().getaddrinfo(host, port, self._owner)
        except OSError as exc:  # httpx maps httpcore's errors only: this one is ours to
            raise httpcore.ConnectError(f"{host} does not resolve: {exc}") from None
        for *_, sockaddr in infos:
            address = str(sockaddr[0])
            refusal = self._policy.address_refusal(host, port, address)
            if refusal is None:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
        raise RefusedTarget(refusal or f"{host} does not resolve")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise RefusedTarget("unix sockets are not upload targets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """Connections of one owner (a caller's execution, the ask-callback): a pool of their
    own, so that a file service that holds its connections holds nobody else's."""

    def __init__(
        self,
        policy: UploadPolicy,
        max_connections: int,
        owner: str = "",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        # The context is given, not made: loading the system's certificates costs tens of
        # milliseconds, too much to spend on every execution's uploads.
        tls = tls or ssl.create_default_context()
        super().__init__(verify=tls, trust_env=False)
        # httpx has no public parameter for httpcore's network backend: build the pool
        # ourselves, with the same defaults plus the guarded backend.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=tls,
            max_connections=max_connections,
            network_backend=GuardedBackend(policy, owner),
        )


async def check_target(policy: UploadPolicy, url: httpx.URL, owner: str = "") -> str | None:
    """Why ``url`` may not be an upload target, checked before the code runs."""
    if url.userinfo:
        return "credentials in the URL are not accepted; use uploadToken"
    host, port = url.host, url.port or (443 if url.scheme == "https" else 80)
    refusal = policy.host_refusal(host, port)
    if refusal:
        return refusal
    try:
        infos = await resolver.shared().getaddrinfo(host, port, owner)
    except OSError as exc:
        return f"{host} does not resolve: {exc}"
    for *_, sockaddr in infos:
        refusal = policy.address_refusal(host, port, str(sockaddr[0]))
        if refusal:
            return refusal
    return None
