"""Stacking the layers over the configured backends: one route per public model."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import redis.asyncio as redis_asyncio

from backends.base import Backend
from backends.errors import ConfigError
from backends.layers.balancer import BackendEndpoints, BalancerLayer, Endpoint
from backends.layers.cache import CacheLayer
from backends.layers.cache_store import CacheStore, MemoryStore, RedisStore
from backends.layers.circuit import CircuitBreaker
from backends.layers.clock import Clock, SystemClock
from backends.layers.fallback import ChainStep, FallbackLayer, expand_chains
from backends.layers.metrics import Metrics, MetricsLayer
from backends.layers.ratelimit import RateLimiter, RedisTokenBucket, TokenBucket
from backends.layers.redis_support import connect_redis
from backends.layers.retry import RetryLayer
from backends.layers.settings import ResilienceSettings
from backends.settings import BackendSettings

logger = logging.getLogger(__name__)

REDIS_URL_KEY = "resilience.redis_url"


@dataclass
class LayerServices:
    """The objects the layers of every route share: metrics, the clock, the cache store and Redis."""

    settings: ResilienceSettings
    metrics: Metrics
    clock: Clock
    redis: redis_asyncio.Redis | None = None
    cache_store: CacheStore | None = None

    async def aclose(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()


def open_services(
    settings: ResilienceSettings,
    *,
    metrics: Metrics | None = None,
    clock: Clock | None = None,
    env: Mapping[str, str] | None = None,
) -> LayerServices:
    """Create the shared services; raises ConfigError when the configured Redis fails its start-up PING.

    `env` supplies the variable named by `redis_password_env`.
    """
    clock = clock or SystemClock()
    services = LayerServices(settings=settings, metrics=metrics or Metrics(), clock=clock)

    if settings.redis_url:
        password = None
        if settings.redis_password_env:
            password = (env or {}).get(settings.redis_password_env)
            if not password:
                raise ConfigError(
                    f"resilience.redis_password_env names {settings.redis_password_env}, which is not set",
                    fix=f"Export {settings.redis_password_env} with the Redis password, or remove redis_password_env.",
                )
        services.redis = connect_redis(settings.redis_url, REDIS_URL_KEY, password)

    memory = MemoryStore(settings.cache.max_entries, settings.cache.ttl_seconds, clock)
    if settings.cache.store == "redis" and services.redis is not None:
        services.cache_store = RedisStore(services.redis, settings.cache.ttl_seconds, memory, clock)
    else:
        services.cache_store = memory
    return services


def _check_backend_sections(settings: ResilienceSettings, backends: Sequence[BackendSettings]) -> None:
    by_name = {backend.name: backend for backend in backends}
    for name, section in settings.backends.items():
        backend = by_name.get(name)
        if backend is None:
            known = ", ".join(sorted(by_name)) or "none"
            raise ConfigError(
                f"[resilience.backends.{name}] names a backend that is not configured",
                fix=f"Use the name of a [[backends]] table ({known}) or remove the section.",
            )
        if section.endpoints and "base_url" not in type(backend).model_fields:
            raise ConfigError(
                f"[resilience.backends.{name}] lists endpoints, but a {backend.kind!r} backend has no base_url",
                fix="Remove `endpoints` there; only openai backends can have several endpoints.",
            )


def _limiter(services: LayerServices, endpoint: str, rate: float | None, burst: int) -> RateLimiter | None:
    if rate is None:
        return None
    local = TokenBucket(rate, burst, services.clock)
    if services.redis is None:
        return local
    return RedisTokenBucket(services.redis, endpoint, rate, burst, services.clock, fallback=local)


def build_endpoints(
    backend_settings: BackendSettings,
    backend: Backend,
    section: BackendEndpoints,
    services: LayerServices,
    create: Callable[[BackendSettings], Backend],
) -> list[Endpoint]:
    """Return the endpoints of one backend: its own base URL, then each extra endpoint as its own backend."""
    circuit = services.settings.circuit
    endpoints = [
        Endpoint(
            backend=backend,
            breaker=CircuitBreaker(backend_settings.name, circuit, services.clock, services.metrics),
            weight=section.weight,
            limiter=_limiter(services, backend_settings.name, section.requests_per_second, section.burst),
        )
    ]

    for number, extra in enumerate(section.endpoints, start=2):
        name = extra.name or f"{backend_settings.name}-{number}"
        data = backend_settings.model_dump()
        data.update(name=name, base_url=extra.base_url, api_key_env=extra.api_key_env)
        endpoint_settings = type(backend_settings).model_validate(data)
        endpoints.append(
            Endpoint(
                backend=create(endpoint_settings),
                breaker=CircuitBreaker(name, circuit, services.clock, services.metrics),
                weight=extra.weight,
                limiter=_limiter(services, name, extra.requests_per_second, section.burst),
            )
        )
    return endpoints


def wrap_routes(
    backend_settings: Sequence[BackendSettings],
    backends: Mapping[str, Backend],
    services: LayerServices,
    create: Callable[[BackendSettings], Backend],
) -> tuple[dict[str, Backend], dict[str, Backend]]:
    """Stack the layers over every configured model.

    Returns the routes by public model name and the extra endpoint backends
    by name (the caller closes those along with the configured ones).
    Raises ConfigError for a fallback chain that loops or names an unknown
    model, and for a `[resilience.backends.NAME]` section that does not fit.
    """
    settings = services.settings
    _check_backend_sections(settings, backend_settings)

    # The full chain of every model, validated before anything is built on it.
    fallbacks = {model.name: model.fallback for backend in backend_settings for model in backend.models}
    owners = {model.name: backend.name for backend in backend_settings for model in backend.models}
    chains = expand_chains(fallbacks, owners)

    # Per model: retry over a balancer over the endpoints of its backend.
    extra_backends: dict[str, Backend] = {}
    stacks: dict[str, Backend] = {}
    for config in backend_settings:
        section = settings.backends.get(config.name, BackendEndpoints())
        endpoints = build_endpoints(config, backends[config.name], section, services, create)
        for endpoint in endpoints[1:]:
            extra_backends[endpoint.name] = endpoint.backend
        balancer = BalancerLayer(endpoints, settings.balancer, clock=services.clock, metrics=services.metrics)
        for model in config.models:
            stacks[model.name] = RetryLayer(
                balancer,
                settings.retry,
                clock=services.clock,
                metrics=services.metrics,
                retry_first_token_timeout=config.retry_first_token_timeout,
            )

    # Per route: metrics over the cache over the fallback chain.
    routes: dict[str, Backend] = {}
    for config in backend_settings:
        for model in config.models:
            route: Backend = FallbackLayer(
                [ChainStep(name, stacks[name]) for name in chains[model.name]],
                settings.fallback,
                metrics=services.metrics,
            )
            if settings.cache.enabled and services.cache_store is not None:
                route = CacheLayer(
                    route,
                    services.cache_store,
                    settings.cache,
                    backend=config.name,
                    upstream_model=model.upstream_id,
                    metrics=services.metrics,
                )
            routes[model.name] = MetricsLayer(route, services.metrics, services.clock)
            logger.debug("route %s: %s", model.name, " -> ".join(chains[model.name]))
    return routes, extra_backends
