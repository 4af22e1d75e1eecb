"""Prometheus metrics of the model layer, in a registry the app owns.

The app creates one `Metrics` and hands it to every layer it builds. Tests
create their own, so no state lives in the process-wide default registry.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from backends.base import Backend
from backends.errors import ParleyError
from backends.layers.clock import Clock
from backends.layers.layer import Layer, StreamEnd, close_stream, end_closed, end_failed, end_finished, take_over
from backends.types import ChatRequest, Event, Finished, ReasoningDelta, TextDelta, Usage

logger = logging.getLogger(__name__)

# Seconds; chat replies range from a cached 1 ms to minutes of slow generation.
LATENCY_BUCKETS = (0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0, 300.0)

# Values of the circuit state gauge.
CIRCUIT_STATE_VALUES = {"closed": 0, "half_open": 1, "open": 2}


class Metrics:
    """The counters, gauges and histograms the layers update."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "parley_requests",
            "Replies by requested model, serving backend and outcome "
            "(ok, cached, canned, error, interrupted, cancelled).",
            ["backend", "model", "outcome"],
            registry=self.registry,
        )
        self.retries = Counter(
            "parley_retries",
            "Retries of a model call after a retryable failure, by backend, model and error code.",
            ["backend", "model", "code"],
            registry=self.registry,
        )
        self.fallbacks = Counter(
            "parley_fallbacks",
            "Moves from a failed model to the next entry of its fallback chain.",
            ["model", "to"],
            registry=self.registry,
        )

        self.cache_lookups = Counter(
            "parley_cache_lookups",
            "Response cache lookups by model and result (hit, miss, bypass).",
            ["model", "result"],
            registry=self.registry,
        )
        self.cache_stores = Counter(
            "parley_cache_stores",
            "Replies written to the response cache, by model.",
            ["model"],
            registry=self.registry,
        )
        self.cache_store_errors = Counter(
            "parley_cache_store_errors",
            "Failed cache store operations by store, such as Redis being down.",
            ["store"],
            registry=self.registry,
        )

        self.circuit_state = Gauge(
            "parley_circuit_state",
            "Circuit breaker state by endpoint: 0 closed, 1 half-open, 2 open.",
            ["endpoint"],
            registry=self.registry,
        )
        self.circuit_opens = Counter(
            "parley_circuit_opens",
            "Times an endpoint's circuit opened, by endpoint and cause.",
            ["endpoint", "cause"],
            registry=self.registry,
        )

        self.rate_limit_waits = Histogram(
            "parley_rate_limit_wait_seconds",
            "Time a request waited for a rate limit token, by endpoint.",
            ["endpoint"],
            buckets=(0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0),
            registry=self.registry,
        )

        self.time_to_first_token = Histogram(
            "parley_time_to_first_token_seconds",
            "Time from request to the first text or reasoning delta, by serving backend and requested model.",
            ["backend", "model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.latency = Histogram(
            "parley_request_duration_seconds",
            "Time from request to the end of the reply, by serving backend and requested model.",
            ["backend", "model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

        self.tokens = Counter(
            "parley_tokens",
            "Tokens reported by upstream usage, by serving backend, requested model and direction (in, out).",
            ["backend", "model", "direction"],
            registry=self.registry,
        )

    def set_circuit_state(self, endpoint: str, state: str) -> None:
        self.circuit_state.labels(endpoint=endpoint).set(CIRCUIT_STATE_VALUES[state])

    def value(self, name: str, **labels: str) -> float:
        """Return the current value of one sample, 0.0 when it was never set."""
        found = self.registry.get_sample_value(name, labels)
        return 0.0 if found is None else found

    def render(self) -> bytes:
        """Return all metrics in the Prometheus text format."""
        return generate_latest(self.registry)


def _outcome(finished: Finished) -> str:
    if finished.cached:
        return "cached"
    if finished.backend == "parley":
        return "canned"
    if finished.reason == "error":
        return "interrupted"
    if finished.reason == "cancelled":
        return "cancelled"
    return "ok"


class MetricsLayer(Layer):
    """The outermost layer of a route: measures each reply and logs one INFO line for it.

    The line names the requested model, who served it, the outcome, the
    latency, whether it came from the cache and the failures on the way.
    """

    def __init__(self, inner: Backend, metrics: Metrics, clock: Clock) -> None:
        super().__init__(inner)
        self._metrics = metrics
        self._clock = clock

    async def stream(self, request: ChatRequest) -> AsyncIterator[Event]:
        started = self._clock.monotonic()
        first_token: float | None = None
        finished: Finished | None = None
        usages: list[Usage] = []
        error: ParleyError | None = None
        ends: list[StreamEnd] = []
        inner = self._inner.stream(request)
        try:
            async for event in inner:
                if type(event) is TextDelta or type(event) is ReasoningDelta:
                    first_token = self._clock.monotonic() - started
                    yield event
                    break
                if type(event) is Usage:
                    usages.append(event)
                elif type(event) is Finished:
                    finished = event
                yield event

            # After the first token: read past the layers that handed their streams off (see `Relay`).
            # Text deltas need nothing here, so a chunk costs one exact type check.
            if first_token is not None:
                rest, ends = take_over(inner)
                try:
                    async for event in rest:
                        if type(event) is not TextDelta:
                            if type(event) is Finished:
                                event = finished = end_finished(ends, event)
                            elif type(event) is Usage:
                                usages.append(event)
                        yield event
                except ParleyError as failure:
                    for event in end_failed(ends, failure):
                        if type(event) is Finished:
                            finished = event
                        elif type(event) is Usage:
                            usages.append(event)
                        yield event
        except ParleyError as failure:
            error = failure
            raise
        finally:
            end_closed(ends)
            await close_stream(inner)
            self._observe(request, started, first_token, finished, usages, error)

    def _observe(
        self,
        request: ChatRequest,
        started: float,
        first_token: float | None,
        finished: Finished | None,
        usages: list[Usage],
        error: ParleyError | None,
    ) -> None:
        elapsed = self._clock.monotonic() - started
        if finished is not None:
            outcome = _outcome(finished)
            backend = finished.backend or self.name
            path = ", ".join(finished.failures) or "-"
        else:
            # No Finished: the call raised, or the caller stopped reading.
            outcome = "error" if error is not None else "cancelled"
            backend = (error.backend if error is not None else "") or self.name
            path = ", ".join(error.params.get("failures", ())) if error is not None else "-"

        self._metrics.requests.labels(backend=backend, model=request.model, outcome=outcome).inc()
        self._metrics.latency.labels(backend=backend, model=request.model).observe(elapsed)
        if first_token is not None:
            self._metrics.time_to_first_token.labels(backend=backend, model=request.model).observe(first_token)
        for usage in usages:
            if usage.prompt_tokens:
                self._metrics.tokens.labels(backend=backend, model=request.model, direction="in").inc(
                    usage.prompt_tokens
                )
            if usage.completion_tokens:
                self._metrics.tokens.labels(backend=backend, model=request.model, direction="out").inc(
                    usage.completion_tokens
                )

        logger.info(
            "model call model=%s served_by=%s outcome=%s latency=%.3fs ttft=%s cached=%s failures=%s%s",
            request.model,
            finished.served_by if finished is not None else backend,
            outcome,
            elapsed,
            f"{first_token:.3f}s" if first_token is not None else "-",
            bool(finished is not None and finished.cached),
            path or "-",
            f" error={error.code}" if error is not None else "",
        )
