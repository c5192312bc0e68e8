"""Command line: ``python -m controller`` serves the API with the environment's settings."""

from __future__ import annotations

import sys

import uvicorn
from pydantic import ValidationError

from controller import logs
from controller.app import create_app
from controller.settings import Settings


def load_settings() -> Settings:
    """Settings from the environment, or exit with a message naming what to set."""
    try:
        return Settings()  # type: ignore[call-arg]  # values come from the environment
    except ValidationError as exc:
        for error in exc.errors():
            name = "_".join(str(p) for p in error["loc"]).upper() or "settings"
            print(f"sandbox-controller: {name}: {error['msg']}", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    settings = load_settings()
    logs.configure(settings.log_format)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        # The service logs its own line per request (controller.api.middleware.RequestLog):
        # uvicorn's would carry query strings and no request id.
        access_log=False,
        log_config=None,
        log_level="info",
        # Our own limits apply (body size, admission); uvicorn's defaults are fine otherwise.
        server_header=False,
    )


if __name__ == "__main__":
    main()
