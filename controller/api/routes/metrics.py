"""GET /metrics: the service's metrics in the Prometheus text format (controller.metrics)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import generate_latest

from controller.api.openapi import AUTHENTICATED, errors
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
        **errors(*AUTHENTICATED),
    },
)
async def metrics(request: Request) -> Response:
    registry: Metrics = request.app.state.metrics
    return Response(generate_latest(registry.registry), media_type=CONTENT_TYPE)
