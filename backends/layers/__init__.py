"""Resilience layers: each wraps a `Backend` and is itself one.

The pipeline stacks them per public model, outermost first:
metrics -> cache -> fallback chain -> per model: retry -> balancer over
endpoints, each endpoint behind its circuit breaker and rate limit.
"""
