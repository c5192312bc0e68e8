"""Command line: ``python -m controller`` (or ``sandbox-controller [serve]``) serves the API
with the environment's settings; ``sandbox-controller exec|repl|browse`` calls one
(sandbox_client.cli)."""

from __future__ import annotations

import sys

from pydantic import ValidationError

from controller import logs, serving
from controller.app import create_app
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


CLIENT_COMMANDS = ("exec", "repl", "browse")
"""Commands that call a service rather than serve one (sandbox_client.cli)."""


def main() -> None:
    command = sys.argv[1:2]
    if command and command[0] in (*CLIENT_COMMANDS, "-h", "--help", "--version"):
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
    serving.serve(settings, app)


if __name__ == "__main__":
    main()
