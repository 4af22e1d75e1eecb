"""Build the router from the config: one backend per `[[backends]]` table, one route per model.

This is the one place where the path to each model is composed. The
resilience layers (cache, fallback, retry, circuit breaker, balancer) wrap
each route here.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import TYPE_CHECKING

from backends.base import Backend
from backends.layers.stack import LayerServices, open_services, wrap_routes
from backends.registry import BackendContext, create_backend
from backends.router import Router
from backends.types import ModelInfo

if TYPE_CHECKING:
    from config import AppConfig

logger = logging.getLogger(__name__)


def build_router(config: AppConfig, context: BackendContext, *, layers: LayerServices | None = None) -> Router:
    """Create every configured backend and route each public model name to it through the layers.

    `layers` lets tests share a fake clock or their own metrics; without it
    the services come from `config.resilience` (which checks Redis, if set).
    """
    backends: dict[str, Backend] = {}
    routes: dict[str, Backend] = {}
    infos: dict[str, ModelInfo] = {}
    # Every backend masks all the config's secrets in upstream error text, not only its own key.
    context = dataclasses.replace(
        context,
        secrets=context.secrets | config.secret_values({**os.environ, **context.env}),
        config_source=config.source,
    )

    for settings in config.backends:
        backend = create_backend(settings, context)
        backends[settings.name] = backend

        for model in settings.models:
            infos[model.name] = model.info(settings.name)
            routes[model.name] = backend

    # Resilience layers over every route; extra endpoints are backends of their own.
    services = layers or open_services(config.resilience, env=context.env)
    routes, endpoint_backends = wrap_routes(
        config.backends, backends, services, lambda settings: create_backend(settings, context)
    )
    backends.update(endpoint_backends)

    logger.debug("routes: %s", {name: info.backend for name, info in infos.items()})
    return Router(backends, routes, infos, metrics=services.metrics, closers=[services.aclose])

