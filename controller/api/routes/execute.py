"""POST /execute: run Python in a fresh sandbox and return how it ended."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from controller.api.body import parse_body
from controller.api.deps import CallerDep, ExecutionServiceDep
from controller.api.openapi import (
    AUTHENTICATED,
    WITH_BODY,
    body_schema,
    errors,
    ran,
    response_example,
)
from controller.api.streaming import EventStream, streamed, wants_stream
from controller.bodies.shape import Limit, Limits
from controller.bodies.specs import EXECUTE
from controller.execution.limits import request_size_rules
from controller.execution.models import ExecuteRequest, ExecuteResponse
from controller.settings import Settings

router = APIRouter()

RESULT_EXAMPLE = {
    "executionId": "ex-3f2a9c0d1e7b4a5c6d8e",
    "exitCode": 0,
    "signal": None,
    "timedOut": False,
    "stdout": "4\n",
    "stderr": "",
    "durationMs": 21.4,
    "truncated": {"stdout": False, "stderr": False},
    "violations": [],
    "usage": {"cpuUserMs": 9.1, "cpuSystemMs": 4.0, "peakMemoryKb": 10240, "network": None},
    "uploads": [],
    "files": [],
    "skippedFiles": [],
    "results": [{"type": "text/plain", "data": "6", "display": 0}],
    "skippedResults": [],
}
response_example("/execute", "post", 200, RESULT_EXAMPLE)


def body_limits(settings: Settings) -> Limits:
    """The request's own count of files, checked before any file is looked at.  (A long
    ``code`` costs no more than its length to validate: the execution refuses it, and
    counts the refusal.)"""
    rule = request_size_rules(settings)["files"]
    return {rule.field: Limit(rule.most, rule.rule, rule.message)}


@router.post(
    "/execute",
    summary="Run Python code in a sandbox",
    response_model=ExecuteResponse,
    openapi_extra=body_schema(
        "ExecuteRequest",
        ExecuteRequest,
        examples={
            "Print": {"code": "print(2 + 2)"},
            "Files in and out, stdin, a timeout": {
                "code": "import sys\ndata = open('data.csv').read()\n"
                "open('out.txt', 'w').write(data.upper())\nprint(sys.stdin.read())",
                "files": [{"path": "data.csv", "content": "YSxiCjEsMgo="}],
                "stdin": "hello",
                "timeoutMs": 5000,
            },
            "A value and a chart": {
                "code": "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nsum([1, 3, 2])"
            },
            "One allowed name": {
                "code": "import urllib.request\n"
                "print(urllib.request.urlopen('https://api.github.com').status)",
                "network": {"allowedDomains": ["api.github.com"]},
            },
        },
    ),
    responses={
        200: ran("How the code ended; a failing program is a result too."),
        **errors(*AUTHENTICATED, *WITH_BODY, 429, 503),
    },
)
async def execute(request: Request, service: ExecutionServiceDep, caller: CallerDep) -> Response:
    body = await parse_body(request, EXECUTE, body_limits(service.settings))
    if wants_stream(request):
        events = EventStream()
        return await streamed(service.execute(body, caller, events), events)
    result = await service.execute(body, caller)
    # Serialized once, here: the model is built from our own values, so the second
    # validation pass FastAPI would make over a returned model is skipped.
    return Response(result.json_bytes(), media_type="application/json")
