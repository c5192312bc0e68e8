"""Command line: ``python -m controller`` (or ``sandbox-controller [serve]``) serves the API
with the environment's settings; ``sandbox-controller exec|browse`` calls one
(sandbox_client.cli)."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from types import FrameType

import uvicorn
from pydantic import ValidationError

from controller import logs
from controller.app import create_app
from controller.draining import Drain
from controller.keys import KeysFileError
from controller.settings import Settings
from sandbox_client import cli


def load_settings() -> Settings:
    """Settings from the environment, or exit with a message naming what to set."""
    try:
        return Settings()  # type: ignore[call-arg]  # values come from the environment
    except ValidationError as exc:
        for error in exc.errors():
            name = "_".join(str(p) for p in error["loc"]).upper() or "settings"
            print(f"sandbox-controller: {name}: {error['msg']}", file=sys.stderr)
        sys.exit(2)


class DrainingServer(uvicorn.Server):
    """uvicorn, with a first SIGTERM that drains (controller.draining) before the server
    closes its sockets; a second signal, or SIGINT, stops at once."""

    def __init__(self, config: uvicorn.Config, drain: Drain) -> None:
        super().__init__(config)
        self.drain = drain
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: asyncio.Future[None] | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM or self.drain.draining or self._loop is None:
            super().handle_exit(sig, frame)
            return
        self.drain.begin()  # from now on new requests are refused
        self._loop.call_soon_threadsafe(self._close_when_drained, sig, frame)

    def _close_when_drained(self, sig: int, frame: FrameType | None) -> None:
        async def close_when_drained() -> None:
            await self.drain.wait()
            super(DrainingServer, self).handle_exit(sig, frame)

        self._closing = asyncio.ensure_future(close_when_drained())


CLIENT_COMMANDS = ("exec", "browse")
"""Commands that call a service rather than serve one (sandbox_client.cli)."""


def main() -> None:
    command = sys.argv[1:2]
    if command and command[0] in (*CLIENT_COMMANDS, "-h", "--help"):
        sys.exit(cli.main(sys.argv[1:]))
    if command and command != ["serve"]:
        sys.exit(f"sandbox-controller: unknown command {command[0]!r}; try --help")
    settings = load_settings()
    logs.configure(settings.log_format)
    try:
        app = create_app(settings)
    except (OSError, KeysFileError) as exc:
        print(f"sandbox-controller: AUTH_KEYS_FILE: {exc}", file=sys.stderr)
        sys.exit(2)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        # The service logs its own line per request (controller.api.middleware.RequestLog):
        # uvicorn's would carry query strings and no request id.
        access_log=False,
        log_config=None,
        log_level="info",
        # Our own limits apply (body size, admission); uvicorn's defaults are fine otherwise.
        server_header=False,
        # The drain has waited for the requests in flight already: what is left is cut.
        timeout_graceful_shutdown=2,
    )
    DrainingServer(config, app.state.drain).run()


if __name__ == "__main__":
    main()
