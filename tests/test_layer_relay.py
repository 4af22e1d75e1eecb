"""Streams handed off after the first token: the layers' end-of-stream work through the whole stack.

After the first token the retry, fallback and balancer layers hand their
streams off, and the cache or metrics layer above reports the end to them.
These tests pin that the breaker, the load count, the interruption and the
served-by line still see every end: finished, failed and cancelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from backends import scripted
from backends.base import Backend
from backends.errors import OverloadedError
from backends.layers.balancer import BalancerLayer, BalancerSettings, Endpoint
from backends.layers.cache import CacheLayer, CacheSettings
from backends.layers.cache_store import MemoryStore
from backends.layers.circuit import CircuitBreaker, CircuitSettings
from backends.layers.clock import FakeClock
from backends.layers.fallback import ChainStep, FallbackLayer, FallbackSettings
from backends.layers.metrics import Metrics, MetricsLayer
from backends.layers.retry import RetryLayer, RetrySettings
from backends.registry import BackendContext
from backends.types import ChatRequest, Event, Finished, Message, Notice, TextDelta

# One failed call in the window opens the circuit, so a single verdict shows.
CIRCUIT = CircuitSettings(min_calls=1, failure_ratio=0.0, cooldown_seconds=10.0)


@dataclass
class Stack:
    route: Backend
    endpoint: Endpoint
    metrics: Metrics
    clock: FakeClock


def build(*replies: dict[str, Any], cache: bool = True, circuit: CircuitSettings = CIRCUIT) -> Stack:
    """Stack metrics, cache, fallback, retry and balancer over one scripted backend, as `wrap_routes` orders them."""
    settings = scripted.Settings.model_validate(
        {"name": "remote", "kind": "scripted", "cycle": False, "models": [{"name": "m"}], "replies": list(replies)}
    )
    backend = scripted.create(settings, BackendContext())
    clock, metrics = FakeClock(), Metrics()
    endpoint = Endpoint(backend=backend, breaker=CircuitBreaker("remote", circuit, clock, metrics))

    balancer = BalancerLayer([endpoint], BalancerSettings(), clock=clock, metrics=metrics)
    retry = RetryLayer(balancer, RetrySettings(backoff_seconds=[1.0], jitter=0.0), clock=clock, metrics=metrics)
    route: Backend = FallbackLayer(
        [ChainStep("m", retry)], FallbackSettings(canned_reply=False), metrics=metrics
    )
    if cache:
        cache_settings = CacheSettings()
        store = MemoryStore(cache_settings.max_entries, cache_settings.ttl_seconds, clock)
        route = CacheLayer(route, store, cache_settings, backend="remote", upstream_model="m", metrics=metrics)
    return Stack(MetricsLayer(route, metrics, clock), endpoint, metrics, clock)


def request(prompt: str = "hi") -> ChatRequest:
    return ChatRequest(messages=(Message.text("user", prompt),), model="m")


async def collect(stack: Stack, prompt: str = "hi") -> list[Event]:
    return [event async for event in stack.route.stream(request(prompt))]


def text_of(events: list[Event]) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))


async def test_failure_after_first_token_counts_against_endpoint() -> None:
    for cache in (True, False):
        stack = build({"text": "one two three", "error": "overloaded", "error_after_chunks": 2}, cache=cache)

        events = await collect(stack)

        assert text_of(events) == "one two "
        assert isinstance(events[-2], Notice)
        assert events[-2].kind == "interrupted"
        finished = events[-1]
        assert isinstance(finished, Finished)
        assert finished.reason == "error"
        assert finished.failures == ("m: overloaded",)
        assert stack.endpoint.breaker.state == "open"
        assert stack.endpoint.in_flight == 0
        assert stack.metrics.value("parley_requests_total", backend="remote", model="m", outcome="interrupted") == 1


async def test_complete_reply_closes_half_open_circuit() -> None:
    stack = build(
        {"text": "one two", "error": "overloaded", "error_after_chunks": 1},
        {"text": "three four five"},
    )
    await collect(stack, "first")
    assert stack.endpoint.breaker.state == "open"
    stack.clock.advance(11.0)
    assert stack.endpoint.breaker.state == "half_open"

    events = await collect(stack, "second")

    assert text_of(events) == "three four five"
    assert stack.endpoint.breaker.state == "closed"
    assert stack.endpoint.in_flight == 0


async def test_cancel_after_first_token_releases_endpoint() -> None:
    stack = build({"error": "overloaded", "error_after_chunks": 1, "text": "one two"}, {"text": "one two three four"})
    await collect(stack, "first")
    stack.clock.advance(11.0)

    stream = stack.route.stream(request("second"))
    first = await anext(stream)
    assert stack.endpoint.in_flight == 1
    await stream.aclose()  # type: ignore[attr-defined]

    assert isinstance(first, TextDelta)
    assert stack.endpoint.in_flight == 0
    # No verdict: the probe slot is free again and the circuit stays half-open.
    assert stack.endpoint.breaker.state == "half_open"
    assert stack.endpoint.breaker.available()
    assert stack.metrics.value("parley_requests_total", backend="remote", model="m", outcome="cancelled") == 1


async def test_retried_reply_keeps_failures_on_finished() -> None:
    stack = build({"error": "overloaded"}, {"text": "fine now"}, circuit=CircuitSettings())

    events = await collect(stack)

    assert text_of(events) == "fine now"
    assert [event.kind for event in events if isinstance(event, Notice)] == ["retrying"]
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert finished.failures == ("m: overloaded",)
    assert stack.endpoint.in_flight == 0


async def test_balancer_read_alone_records_mid_stream_failure() -> None:
    stack = build({"text": "one two three", "error": "overloaded", "error_after_chunks": 1})
    balancer = BalancerLayer([stack.endpoint], BalancerSettings(), clock=stack.clock, metrics=stack.metrics)

    seen: list[Event] = []
    with pytest.raises(OverloadedError):
        async for event in balancer.stream(request()):
            seen.append(event)

    assert text_of(seen) == "one "
    assert stack.endpoint.breaker.state == "open"
    assert stack.endpoint.in_flight == 0
