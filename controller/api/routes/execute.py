"""POST /execute: run Python in a fresh sandbox and return how it ended."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from controller.api.body import parse_body
from controller.api.deps import CallerDep, ExecutionServiceDep
from controller.api.openapi import AUTHENTICATED, WITH_BODY, body_schema, errors
from controller.execution.models import ExecuteRequest, ExecuteResponse

router = APIRouter()


@router.post(
    "/execute",
    summary="Run Python code in a sandbox",
    response_model=ExecuteResponse,
    openapi_extra=body_schema("ExecuteRequest", ExecuteRequest),
    responses=errors(*AUTHENTICATED, *WITH_BODY, 429, 503),
)
async def execute(request: Request, service: ExecutionServiceDep, caller: CallerDep) -> Response:
    result = await service.execute(await parse_body(request, ExecuteRequest), caller)
    # Serialized once, here: the model is built from our own values, so the second
    # validation pass FastAPI would make over a returned model is skipped.
    return Response(result.model_dump_json(), media_type="application/json")
