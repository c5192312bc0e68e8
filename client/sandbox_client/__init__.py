"""A Python client of the sandbox controller's API (httpx): code, contexts and browsers.

    from sandbox_client import Client

    with Client("http://localhost:8080", token) as client:
        result = client.execute("print(2 + 2)")
        print(result.stdout, result.exit_code)
        for event in client.stream("for i in range(3): print(i)"):  # as it happens
            print(event)  # Output, Result, Violation; last, the ExecutionResult
        with client.context() as ctx:  # an interpreter that keeps its state
            ctx.run("total = 40")
            print(ctx.run("print(total + 2)").stdout)
        with client.browser(device="iPhone 13") as page:
            page.navigate("https://example.com")
            html = page.content()

The user's code failing is a result (``exit_code``, ``timed_out``, ``violations``); the
platform failing is an exception of ``sandbox_client.errors`` whose message says why.
``AsyncClient`` is the implementation; ``Client`` runs it for synchronous callers.
"""

__version__ = "0.1.0"
"""The project's one version: this client's, the service's (both distributions read it
here) and its chart's (a test holds Chart.yaml to it)."""

from sandbox_client.aio import AsyncBrowserSession, AsyncClient  # noqa: E402
from sandbox_client.contexts import AsyncContext, AsyncContextFiles  # noqa: E402
from sandbox_client.errors import (  # noqa: E402
    ApiError,
    AuthenticationError,
    InvalidRequest,
    NotFound,
    Overloaded,
    SandboxClientError,
    ServiceUnavailable,
    TransportError,
)
from sandbox_client.models import (  # noqa: E402
    ContextResult,
    ExecutionResult,
    InputFile,
    Output,
    OutputFile,
    Result,
    Violation,
    WorkspaceFile,
)
from sandbox_client.sync import BrowserSession, Client, Context, ContextFiles  # noqa: E402

__all__ = [
    "ApiError",
    "AsyncBrowserSession",
    "AsyncClient",
    "AsyncContext",
    "AsyncContextFiles",
    "AuthenticationError",
    "BrowserSession",
    "Client",
    "Context",
    "ContextFiles",
    "ContextResult",
    "ExecutionResult",
    "InputFile",
    "InvalidRequest",
    "NotFound",
    "Output",
    "OutputFile",
    "Overloaded",
    "Result",
    "SandboxClientError",
    "ServiceUnavailable",
    "TransportError",
    "Violation",
    "WorkspaceFile",
    "__version__",
]
