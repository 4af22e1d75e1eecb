"""`GET /healthz`: the configured backends and whether each can be reached.

It needs no API key, so load balancers and uptime checks can call it. Every
caller gets each backend's name and reachability. Callers that pass the API's
key check (anyone while no keys are configured) also get the one-line detail
of each health check and the model names.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.auth import bearer_token
from api.services import api_services

router = APIRouter()


@router.api_route("/healthz", methods=["GET", "HEAD"])
async def healthz(request: Request) -> JSONResponse:
    services = api_services(request)
    checks = await services.router.health()
    status = "ok" if all(check.reachable for check in checks) else "degraded"

    # Details name base URLs and failures, so only a caller with a valid key sees them.
    if not services.api_keys.accepts(bearer_token(request.headers.get("authorization"))):
        backends = [{"name": check.backend, "reachable": check.reachable} for check in checks]
        return JSONResponse({"status": status, "backends": backends})

    detailed: list[dict[str, Any]] = [
        {"name": check.backend, "reachable": check.reachable, "detail": check.detail} for check in checks
    ]
    models = [{"name": info.name, "backend": info.backend} for info in services.router.models()]
    return JSONResponse({"status": status, "backends": detailed, "models": models})
