"""`GET /healthz`: the configured backends and whether each can be reached.

It needs no API key, so load balancers and uptime checks can call it. It
returns each backend's name, reachability and the one-line detail of its
health check, and the model names.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.services import api_services

router = APIRouter()


@router.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    services = api_services(request)
    checks = await services.router.health()

    backends = [{"name": check.backend, "reachable": check.reachable, "detail": check.detail} for check in checks]
    models = [{"name": info.name, "backend": info.backend} for info in services.router.models()]
    status = "ok" if all(check.reachable for check in checks) else "degraded"
    return JSONResponse({"status": status, "backends": backends, "models": models})
