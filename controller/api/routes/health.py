"""GET /health: the backend in use and whether the sandbox proved to work; GET /livez: alive."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from controller.api.deps import ExecutionServiceDep
from controller.api.openapi import public

router = APIRouter()


@router.get(
    "/health",
    summary="Service health (no authentication)",
    openapi_extra=public({}),
    responses={
        200: {"description": "The sandbox proved to work: executions are admitted."},
        503: {
            "description": "Executions are refused: the body's `sandbox.detail` says why, "
            "or `status` is `stopping`."
        },
    },
)
async def health(request: Request, service: ExecutionServiceDep) -> JSONResponse:
    check = service.check
    stopping = request.app.state.drain.draining
    body = {
        "status": "stopping" if stopping else ("ok" if check.ok else "degraded"),
        "backend": service.backend_name,
        "sandbox": {"ok": check.ok, "detail": check.detail, "limits": check.limits},
        "executions": {
            "admitted": service.admission.admitted,
            "warmSandboxes": service.warm_sandboxes,
        },
    }
    ceiling = service.settings.network_ceiling
    # Counts, not names: /health answers anyone, and the allowlist is the operator's.
    body["network"] = {
        "allowedDomains": len(ceiling.allowed) if ceiling.allows_anything else 0,
        "deniedDomains": len(ceiling.denied),
    }
    budget = service.admission.budget
    if budget is not None:
        body["memory"] = {"budgetMb": budget.total_mb, "heldMb": budget.held_mb}
    # 503 while the sandbox is not proven, or while stopping: load balancers stop sending
    # executions here.
    return JSONResponse(body, status_code=200 if check.ok and not stopping else 503)


@router.get(
    "/livez",
    summary="Liveness (no authentication)",
    openapi_extra=public({}),
    responses={200: {"description": "The service answers; whether it admits is /health's."}},
)
async def livez() -> JSONResponse:
    # 200 while the sandbox is unproven or the service drains: a restart would not help
    # either, and /health (the readiness probe) already keeps executions away.
    return JSONResponse({"status": "alive"})
