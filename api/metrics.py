"""`GET /metrics`: the model layer's Prometheus metrics in the text exposition format.

When API keys are configured the scraper must send one as a bearer token
(Prometheus: `authorization: {credentials_file: ...}`), because the metrics
name every configured backend and model.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api.services import api_services

router = APIRouter()


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    services = api_services(request)
    services.authorize(request)

    registry = services.router.metrics
    if registry is None:
        # A router built without layers has nothing to report; an empty body is valid exposition text.
        return Response(b"", media_type="text/plain; version=0.0.4; charset=utf-8")
    return Response(registry.render(), media_type=registry.content_type)
