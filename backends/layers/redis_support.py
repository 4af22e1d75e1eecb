"""Connecting to Redis and riding out its failures, shared by the cache store and the rate limiter."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

import redis as redis_sync
import redis.asyncio as redis_asyncio
from redis.exceptions import RedisError

from backends.errors import ConfigError
from backends.layers.clock import Clock

logger = logging.getLogger(__name__)

# Errors that mean "Redis did not serve this call"; callers fall back to memory on them.
REDIS_FAILURES: tuple[type[Exception], ...] = (RedisError, OSError)

# Socket and connect timeout of every Redis call in seconds; a slower Redis counts as down.
REDIS_TIMEOUT_SECONDS = 1.0

# After a failure Redis is asked again only after this many seconds; in between memory serves.
REDIS_RETRY_SECONDS = 30.0


def redact_url(url: str) -> str:
    """Return the URL without user name and password, for logs and error messages."""
    parts = urlsplit(url)
    if not parts.username and not parts.password:
        return url
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def connect_redis(url: str, config_key: str, password: str | None = None) -> redis_asyncio.Redis:
    """Return an asyncio client for `url` after one PING; raises ConfigError naming `config_key` if the PING fails.

    `password`, when given, replaces any password in the URL. The PING uses
    a short-lived blocking client, so start-up code without an event loop
    can call this. The returned client connects lazily in the loop that
    first uses it.
    """
    options: dict[str, Any] = {
        "socket_timeout": REDIS_TIMEOUT_SECONDS,
        "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
    }
    if password is not None:
        options["password"] = password
    try:
        probe = redis_sync.Redis.from_url(url, **options)
    except ValueError as exc:
        raise ConfigError(
            f"{config_key} = {redact_url(url)!r} is not a valid Redis URL ({exc})",
            fix=f"Set {config_key} to a URL such as redis://127.0.0.1:6379/0, or remove it.",
        ) from exc

    try:
        probe.ping()
    except REDIS_FAILURES as exc:
        raise ConfigError(
            f"Redis at {config_key} = {redact_url(url)!r} failed the start-up PING ({type(exc).__name__}: {exc})",
            fix=f"Start Redis at that address, check its password (resilience.redis_password_env), "
            f"correct {config_key}, or remove it to keep the state in memory.",
        ) from exc
    finally:
        probe.close()
    return redis_asyncio.Redis.from_url(url, **options)


class RedisOutage:
    """Tracks whether Redis is failing for one user of it, with one WARNING per outage.

    `usable()` is false for `REDIS_RETRY_SECONDS` after a failure, so a dead
    Redis costs one failed call per interval instead of one per request.
    """

    def __init__(self, purpose: str, clock: Clock) -> None:
        self._purpose = purpose
        self._clock = clock
        self._failed_at: float | None = None
        self.failures = 0

    @property
    def degraded(self) -> bool:
        return self._failed_at is not None

    def usable(self) -> bool:
        if self._failed_at is None:
            return True
        return self._clock.monotonic() - self._failed_at >= REDIS_RETRY_SECONDS

    def failed(self, exc: Exception) -> None:
        self.failures += 1
        if self._failed_at is None:
            logger.warning(
                "Redis failed for the %s (%s: %s); using process memory until Redis responds again",
                self._purpose,
                type(exc).__name__,
                exc,
            )
        else:
            logger.debug("Redis still failing for the %s: %s", self._purpose, exc)
        self._failed_at = self._clock.monotonic()

    def succeeded(self) -> None:
        if self._failed_at is not None:
            logger.info("Redis responds again; the %s uses Redis", self._purpose)
            self._failed_at = None
