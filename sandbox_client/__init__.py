"""A Python client of the sandbox controller's API (httpx): code execution and browsers.

    from sandbox_client import Client

    with Client("http://localhost:8080", token) as client:
        result = client.execute("print(2 + 2)")
        print(result.stdout, result.exit_code)
        with client.browser(device="iPhone 13") as page:
            page.navigate("https://example.com")
            html = page.content()

The user's code failing is a result (``exit_code``, ``timed_out``, ``violations``); the
platform failing is an exception of ``sandbox_client.errors`` whose message says why.
``AsyncClient`` is the implementation; ``Client`` runs it for synchronous callers.
"""

from sandbox_client.aio import AsyncBrowserSession, AsyncClient
from sandbox_client.errors import (
    ApiError,
    AuthenticationError,
    InvalidRequest,
    NotFound,
    Overloaded,
    SandboxClientError,
    ServiceUnavailable,
    TransportError,
)
from sandbox_client.models import ExecutionResult, InputFile, OutputFile, Violation
from sandbox_client.sync import BrowserSession, Client

__all__ = [
    "ApiError",
    "AsyncBrowserSession",
    "AsyncClient",
    "AuthenticationError",
    "BrowserSession",
    "Client",
    "ExecutionResult",
    "InputFile",
    "InvalidRequest",
    "NotFound",
    "OutputFile",
    "Overloaded",
    "SandboxClientError",
    "ServiceUnavailable",
    "TransportError",
    "Violation",
]
