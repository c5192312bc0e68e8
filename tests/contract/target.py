"""What a contract test talks to: the service at a base URL with its token."""

from __future__ import annotations

from typing import Any, Protocol

import httpx


class Api(Protocol):
    base_url: str
    token: str
    client: httpx.Client
    """Authenticated with the token."""
    backend: str
    """``local`` or ``kubernetes``: what /health must report."""
    kernel: str
    """``linux``, or ``gvisor`` where runner pods run under gVisor (tests/e2e)."""

    def execute(self, code: str, **fields: Any) -> dict[str, Any]:
        """POST /execute; the result of a 200, or a failed test."""
        ...


class Files(Protocol):
    """A file service the service may upload to, and what it received."""

    def url(self, path: str) -> str:
        """The upload URL, as the service (not the test) reaches it."""
        ...

    def received(self) -> list[Any]:
        """What arrived, as tests.file_service.Received records."""
        ...

    def clear(self) -> None: ...
