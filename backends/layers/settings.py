"""The `[resilience]` config section: one sub-section per layer."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from backends.layers.balancer import BackendEndpoints, BalancerSettings
from backends.layers.cache import CacheSettings
from backends.layers.circuit import CircuitSettings
from backends.layers.fallback import FallbackSettings
from backends.layers.retry import RetrySettings
from backends.settings import StrictModel

# URL schemes redis-py accepts.
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class ResilienceSettings(StrictModel):
    """Settings of the layers that cache, retry, balance and replace replies."""

    redis_url: str | None = Field(
        default=None,
        description="Redis shared by several Parley processes for the cache and rate limits; unset keeps both in memory.",
    )
    redis_password_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Environment variable holding the Redis password, so it stays out of the config file.",
    )
    cache: CacheSettings = Field(default_factory=CacheSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    circuit: CircuitSettings = Field(default_factory=CircuitSettings)
    fallback: FallbackSettings = Field(default_factory=FallbackSettings)
    balancer: BalancerSettings = Field(default_factory=BalancerSettings)
    backends: dict[str, BackendEndpoints] = Field(
        default_factory=dict, description="Endpoints and rate limits by backend name, as [resilience.backends.NAME]."
    )

    @field_validator("redis_url")
    @classmethod
    def _check_redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(REDIS_SCHEMES):
            raise ValueError(
                f"redis_url must start with one of {', '.join(REDIS_SCHEMES)}, such as redis://127.0.0.1:6379/0"
            )
        return value

    @model_validator(mode="after")
    def _redis_store_needs_url(self) -> ResilienceSettings:
        if self.cache.store == "redis" and not self.redis_url:
            raise ValueError(
                'cache.store = "redis" needs resilience.redis_url, such as "redis://127.0.0.1:6379/0"; '
                'set it or use store = "memory"'
            )
        return self
