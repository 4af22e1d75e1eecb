"""The HTTP and WebSocket API: OpenAI-compatible endpoints, /ws/chat and /healthz."""

from __future__ import annotations

from fastapi import FastAPI

from api import health, openai_routes, ws_routes
from api.errors import install_error_handlers
from api.services import ApiServices


def install_api(app: FastAPI, services: ApiServices) -> None:
    """Add the API routes and the error handlers to `app`; call before mounting the UI at "/"."""
    app.state.parley_api = services
    install_error_handlers(app)
    app.include_router(openai_routes.router)
    app.include_router(ws_routes.router)
    app.include_router(health.router)


def install_fallback(app: FastAPI) -> None:
    """Return OpenAI's error JSON for unknown /v1 paths; call after the last API router, before the UI."""
    app.include_router(openai_routes.fallback_router)
