"""The /contexts API: stateful interpreters, their calls and their workspace's files."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from controller.api.body import parse_body
from controller.api.deps import CallerDep, ContextServiceDep
from controller.api.openapi import CONTEXT_CALL, WITH_BODY, body_schema, errors, ran
from controller.api.routes.execute import body_limits
from controller.api.streaming import EventStream, streamed, wants_stream
from controller.bodies.specs import CONTEXT_EXECUTE, CREATE_CONTEXT
from controller.contexts.models import (
    ContextExecuteRequest,
    ContextExecuteResponse,
    ContextFiles,
    ContextInfo,
    ContextList,
    CreateContextRequest,
)

router = APIRouter(prefix="/contexts", tags=["contexts"])

FilePath = Annotated[
    str, Path(description="Relative to the workspace, e.g. `data/in.csv` (input files' rules).")
]
BYTES = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


@router.post(
    "",
    status_code=201,
    summary="Open a code context: a Python interpreter that keeps its state between calls",
    openapi_extra=body_schema(
        "CreateContextRequest",
        CreateContextRequest,
        required=False,
        examples={
            "Defaults": {},
            "With a file, an hour idle": {
                "idleTimeoutS": 3600,
                "files": [{"path": "data.csv", "content": "YSxiCjEsMgo="}],
                "labels": {"agent": "analyst-3"},
            },
        },
    ),
    responses=errors(*CONTEXT_CALL, *WITH_BODY, 429, 503),
)
async def create_context(
    request: Request, service: ContextServiceDep, caller: CallerDep
) -> ContextInfo:
    if not (await request.body()).strip():
        return await service.create(CreateContextRequest.model_validate({}), caller)
    body = await parse_body(request, CREATE_CONTEXT, body_limits(service.settings))
    return await service.create(body, caller)


@router.get("", summary="List the caller's code contexts", responses=errors(401, 429))
async def list_contexts(service: ContextServiceDep, caller: CallerDep) -> ContextList:
    return ContextList(
        contexts=service.list(caller),
        maxContexts=min(service.settings.max_contexts, caller.max_contexts),
    )


@router.get("/{context_id}", summary="One code context", responses=errors(*CONTEXT_CALL))
async def get_context(
    context_id: str, service: ContextServiceDep, caller: CallerDep
) -> ContextInfo:
    return await service.info(context_id, caller)


@router.delete(
    "/{context_id}",
    status_code=204,
    summary="Close a code context: its sandbox, its state and its files are gone",
    responses=errors(*CONTEXT_CALL),
)
async def delete_context(
    context_id: str, service: ContextServiceDep, caller: CallerDep
) -> Response:
    await service.delete(context_id, caller)
    return Response(status_code=204)


@router.post(
    "/{context_id}/execute",
    summary="Run code in the context (its variables, imports and files persist)",
    response_model=ContextExecuteResponse,
    openapi_extra=body_schema(
        "ContextExecuteRequest",
        ContextExecuteRequest,
        examples={
            "Define": {"code": "import math\nradius = 2"},
            "Use": {"code": "print(math.pi * radius ** 2)"},
            "A chart, as SVG": {
                "code": "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])",
                "figureFormats": ["image/svg+xml"],
            },
        },
    ),
    responses={
        200: ran("How the call ended; a failing call is a result too."),
        **errors(*CONTEXT_CALL, *WITH_BODY),
    },
)
async def execute_in_context(
    context_id: str, request: Request, service: ContextServiceDep, caller: CallerDep
) -> Response:
    body = await parse_body(request, CONTEXT_EXECUTE)
    if wants_stream(request):
        events = EventStream()
        return await streamed(service.execute(context_id, body, caller, events), events)
    result = await service.execute(context_id, body, caller)
    return Response(result.model_dump_json(), media_type="application/json")


@router.post(
    "/{context_id}/restart",
    summary="A fresh interpreter for the context (variables lost, files kept)",
    responses=errors(*CONTEXT_CALL),
)
async def restart_context(
    context_id: str, service: ContextServiceDep, caller: CallerDep
) -> ContextInfo:
    return await service.restart(context_id, caller)


@router.get(
    "/{context_id}/files",
    summary="The files in the context's workspace",
    responses=errors(*CONTEXT_CALL),
)
async def list_files(
    context_id: str, service: ContextServiceDep, caller: CallerDep
) -> ContextFiles:
    return await service.list_files(context_id, caller)


@router.get(
    "/{context_id}/files/{path:path}",
    summary="A file of the context's workspace: its bytes",
    response_class=Response,
    responses={
        200: {"description": "The file's bytes.", "content": BYTES},
        **errors(*CONTEXT_CALL, 422),
    },
)
async def read_file(
    context_id: str, path: FilePath, service: ContextServiceDep, caller: CallerDep
) -> Response:
    data = await service.read_file(context_id, path, caller)
    return Response(data, media_type="application/octet-stream")


@router.put(
    "/{context_id}/files/{path:path}",
    status_code=204,
    summary="Write a file into the context's workspace (the body is its bytes)",
    openapi_extra={"requestBody": {"required": False, "content": BYTES}},  # empty: an empty file
    responses=errors(*CONTEXT_CALL, *WITH_BODY),
)
async def write_file(
    context_id: str,
    path: FilePath,
    request: Request,
    service: ContextServiceDep,
    caller: CallerDep,
) -> Response:
    await service.write_file(context_id, path, await request.body(), caller)
    return Response(status_code=204)


@router.delete(
    "/{context_id}/files/{path:path}",
    status_code=204,
    summary="Delete a file or a directory of the context's workspace",
    responses=errors(*CONTEXT_CALL, 422),
)
async def delete_file(
    context_id: str, path: FilePath, service: ContextServiceDep, caller: CallerDep
) -> Response:
    await service.delete_file(context_id, path, caller)
    return Response(status_code=204)
