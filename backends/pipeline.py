"""Build the router from the config: one backend per `[[backends]]` table, one route per model.

This is the one place where the path to each model is composed. The
resilience layers (cache, fallback, retry, circuit breaker, balancer) wrap
each route here.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from backends.base import Backend
from backends.registry import BackendContext, create_backend
from backends.router import Router
from backends.types import ModelInfo

if TYPE_CHECKING:
    from config import AppConfig

logger = logging.getLogger(__name__)


def build_router(config: AppConfig, context: BackendContext) -> Router:
    """Create every configured backend and route each public model name to it."""
    backends: dict[str, Backend] = {}
    routes: dict[str, Backend] = {}
    infos: dict[str, ModelInfo] = {}

    for settings in config.backends:
        backend = create_backend(settings, context)
        backends[settings.name] = backend

        for model in settings.models:
            infos[model.name] = model.info(settings.name)
            routes[model.name] = backend

    logger.debug("routes: %s", {name: info.backend for name, info in infos.items()})
    return Router(backends, routes, infos)

