"""Errors the resilience layers raise themselves, under the one root `ParleyError`."""

from __future__ import annotations

from backends.errors import ParleyError


class CircuitOpenError(ParleyError):
    """Every endpoint of a model is skipped by its circuit breaker; the fallback chain takes over."""

    code = "circuit_open"
    http_status = 503
    fix = "The server failed repeatedly and is skipped for a while; pick another model or retry later."


class ThrottledError(ParleyError):
    """Every endpoint of a model is at its request rate limit for longer than the configured wait."""

    code = "throttled"
    http_status = 429
    fix = "Wait a moment and retry, or raise requests_per_second for the endpoint in the config."
