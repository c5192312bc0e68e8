"""POST /execute: run Python in a fresh sandbox and return how it ended."""

from __future__ import annotations

from fastapi import APIRouter, Request

from controller.api.body import body_schema, parse_body
from controller.api.deps import ExecutionServiceDep
from controller.execution.models import ExecuteRequest, ExecuteResponse

router = APIRouter()


@router.post(
    "/execute", summary="Run Python code in a sandbox", openapi_extra=body_schema(ExecuteRequest)
)
async def execute(request: Request, service: ExecutionServiceDep) -> ExecuteResponse:
    return await service.execute(await parse_body(request, ExecuteRequest))
