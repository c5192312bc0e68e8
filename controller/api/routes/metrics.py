"""GET /metrics: the service's metrics in the Prometheus text format (controller.metrics),
for AUTH_TOKEN's caller (or anyone, with METRICS_PUBLIC)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import generate_latest

from controller.api.middleware import KEY_SCOPE
from controller.api.openapi import AUTHENTICATED, errors
from controller.errors import Forbidden
from controller.keys import DEFAULT_KEY, Caller
from controller.metrics import CONTENT_TYPE, Metrics

router = APIRouter()


@router.get(
    "/metrics",
    summary="Metrics in the Prometheus text format",
    response_class=Response,
    responses={
        200: {
            "description": "Executions, latencies, queue, sandboxes, violations, uploads, "
            "browser sessions and operations (docs/operations.md).",
            "content": {CONTENT_TYPE.split(";")[0]: {"schema": {"type": "string"}}},
        },
        **errors(*AUTHENTICATED, 403),
    },
)
async def metrics(request: Request) -> Response:
    # The metrics name every key and count its work: the operator's (AUTH_TOKEN's), not a
    # tenant's to read.  Served to anyone only when METRICS_PUBLIC made the path public.
    caller: Caller | None = request.scope.get(KEY_SCOPE)
    if caller is not None and caller.name != DEFAULT_KEY:
        raise Forbidden(f"/metrics is the operator's: key {caller.name!r} may not read it")
    registry: Metrics = request.app.state.metrics
    return Response(generate_latest(registry.registry), media_type=CONTENT_TYPE)
