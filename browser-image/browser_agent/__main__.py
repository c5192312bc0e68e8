"""``python -m browser_agent``: start the proxy and Chromium, then serve the agent's API.

Once ready it prints one JSON line on stdout, ``{"ready": true, "port": N, "devices":
[names]}``, and nothing else there.  The session token comes from ``--token-file``
(``-``: the first line of stdin), or only its SHA-256 from ``--token-sha256-env`` (a pod:
its spec then carries a digest, never the token, which stays in the session's Secret).
With ``--exit-on-stdin-eof`` the agent also exits when its stdin closes: the controller
holds the other end, so the agent ends with the controller whatever kills it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import socket
import sys
from pathlib import Path

import uvicorn

from browser_agent.browser import BrowserOptions, SessionBrowser
from browser_agent.proxy import FilteringProxy
from browser_agent.server import build_app
from sandbox_common import bearer
from sandbox_common.bearer import MIN_TOKEN_CHARS
from sandbox_common.domains import DomainPolicy
from sandbox_common.egress_gate import EgressGate, EgressRules

BROWSER_EXITED_STATUS = 3
"""The agent's exit status when Chromium died under it (a pod's reason then says so)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="browser_agent", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address of the API")
    parser.add_argument("--port", type=int, default=0, help="port of the API (0: any free)")
    parser.add_argument("--token-file", default="-", help="file with the session token; - is stdin")
    parser.add_argument(
        "--token-sha256-env", help="environment variable with the token's hex SHA-256 instead"
    )
    parser.add_argument("--data-dir", type=Path, required=True, help="the session's own directory")
    parser.add_argument("--executable", default="/usr/bin/chromium")
    parser.add_argument("--no-chromium-sandbox", action="store_true")
    parser.add_argument("--allow-private-networks", action="store_true")
    parser.add_argument(
        "--reserved-port",
        type=int,
        action="append",
        default=[],
        help="a port never reachable on this host's addresses (repeatable)",
    )
    parser.add_argument("--exit-on-stdin-eof", action="store_true")
    parser.add_argument(
        "--proxy-socket",
        type=Path,
        help="serve the proxy on this Unix socket, not on loopback: Chromium runs in a "
        "network namespace of its own, whose launcher forwards --proxy-port there",
    )
    parser.add_argument(
        "--proxy-port", type=int, default=0, help="the proxy's port as Chromium reaches it"
    )
    return parser.parse_args(argv)


def read_token_digest(args: argparse.Namespace) -> bytes:
    """The SHA-256 of the session token, which is all the agent keeps of it."""
    if args.token_sha256_env:
        try:
            value = bytes.fromhex(os.environ.get(args.token_sha256_env, ""))
        except ValueError:
            value = b""
        if len(value) != 32:
            raise SystemExit(f"browser_agent: ${args.token_sha256_env} must be a hex SHA-256")
        return value
    path = args.token_file
    text = sys.stdin.readline() if path == "-" else Path(path).read_text()
    token = text.strip()
    if len(token) < MIN_TOKEN_CHARS:
        raise SystemExit(f"browser_agent: the session token must be >= {MIN_TOKEN_CHARS} chars")
    return bearer.digest(token)


async def watch_stdin(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass
    stop.set()


def listening_socket(host: str, port: int) -> socket.socket:
    """The API's socket, made here to learn its port before serving.

    Made with an explicit IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets whose
    ``proto`` says TCP, and without it every keep-alive response waits ~40 ms (Nagle
    against the client's delayed ACK).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


async def serve(args: argparse.Namespace, token_digest: bytes) -> bool:
    """Serve until told to stop; whether Chromium exited under the agent meanwhile."""
    api = listening_socket(args.host, args.port)
    api_port = api.getsockname()[1]
    # Nothing gets out until a session's policy arrives (POST /session).
    proxy = FilteringProxy(EgressGate(DomainPolicy(), EgressRules()))
    if args.proxy_socket is not None:
        await proxy.start_unix(str(args.proxy_socket))
        proxy_port, own_ports = args.proxy_port, {api_port}
    else:
        proxy_port = await proxy.start()
        own_ports = {api_port, proxy_port}
    # The agent's own ports are reserved like the controller's: a page cannot call them.
    rules = EgressRules(
        reserved_ports=frozenset({*args.reserved_port, *own_ports}),
        private_allowed=args.allow_private_networks,
    )
    proxy.gate = EgressGate(DomainPolicy(), rules)
    browser = SessionBrowser(
        BrowserOptions(
            executable=args.executable,
            proxy_port=proxy_port,
            chromium_sandbox=not args.no_chromium_sandbox,
        )
    )
    await browser.start()
    config = uvicorn.Config(
        build_app(browser, proxy, token_digest),
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    stop = asyncio.Event()
    # Chromium gone means the agent has nothing left to serve: it ends (after answering
    # what is in flight, with BrowserExited), and its owner sees a dead agent.
    browser.on_exit = stop.set
    watchers = [asyncio.create_task(_stop_server(server, stop))]
    if args.exit_on_stdin_eof:
        watchers.append(asyncio.create_task(watch_stdin(stop)))
    ready = {"ready": True, "port": api_port, "pid": os.getpid(), "devices": browser.device_names()}
    print(json.dumps(ready), flush=True)
    try:
        await server.serve(sockets=[api])
    finally:
        for task in watchers:
            task.cancel()
        await browser.close()
        await proxy.stop()
    return browser.exited


async def _stop_server(server: uvicorn.Server, stop: asyncio.Event) -> None:
    await stop.wait()
    server.should_exit = True


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="browser_agent %(levelname)s %(message)s")
    token_digest = read_token_digest(args)
    with contextlib.suppress(KeyboardInterrupt):
        if asyncio.run(serve(args, token_digest)):
            sys.exit(BROWSER_EXITED_STATUS)


if __name__ == "__main__":
    main()
