"""The balancer and its memory token bucket, over scripted backends, with a fake clock."""

from __future__ import annotations

from typing import Any

import pytest

from backends import scripted
from backends.errors import OverloadedError
from backends.layers.balancer import BalancerLayer, BalancerSettings, Endpoint
from backends.layers.circuit import CircuitBreaker, CircuitSettings
from backends.layers.clock import FakeClock
from backends.layers.errors import CircuitOpenError, ThrottledError
from backends.layers.metrics import Metrics
from backends.layers.ratelimit import TokenBucket
from backends.registry import BackendContext
from backends.types import ChatRequest, Event, Finished, Message, TextDelta


def make_backend(name: str, *replies: dict[str, Any]) -> scripted.ScriptedBackend:
    settings = scripted.Settings(
        name=name, kind="scripted", cycle=False, models=[{"name": "m"}], replies=list(replies)
    )
    backend = scripted.create(settings, BackendContext())
    assert isinstance(backend, scripted.ScriptedBackend)
    return backend


def endpoint(
    backend: scripted.ScriptedBackend, clock: FakeClock, metrics: Metrics, *, weight: float = 1.0, rate: float | None = None
) -> Endpoint:
    limiter = TokenBucket(rate, 1, clock) if rate is not None else None
    breaker = CircuitBreaker(backend.name, CircuitSettings(), clock, metrics)
    return Endpoint(backend=backend, breaker=breaker, weight=weight, limiter=limiter)


def request() -> ChatRequest:
    return ChatRequest(messages=(Message.text("user", "hi"),), model="m")


async def collect(layer: BalancerLayer) -> list[Event]:
    return [event async for event in layer.stream(request())]


def served_by(events: list[Event]) -> str:
    finished = events[-1]
    assert isinstance(finished, Finished)
    return finished.backend


async def test_busy_endpoint_is_passed_over() -> None:
    first, second = make_backend("a", {"text": "one two"}), make_backend("b", {"text": "one two"})
    clock, metrics = FakeClock(), Metrics()
    layer = BalancerLayer(
        [endpoint(first, clock, metrics), endpoint(second, clock, metrics)], BalancerSettings(), clock=clock, metrics=metrics
    )

    held = layer.stream(request())
    assert isinstance(await anext(held), TextDelta)
    events = await collect(layer)
    await held.aclose()

    assert len(first.received) == 1
    assert served_by(events) == "b"
    assert [item.in_flight for item in layer.endpoints] == [0, 0]


async def test_weights_split_idle_traffic() -> None:
    heavy, light = make_backend("heavy"), make_backend("light")
    clock, metrics = FakeClock(), Metrics()
    layer = BalancerLayer(
        [endpoint(heavy, clock, metrics, weight=3), endpoint(light, clock, metrics, weight=1)],
        BalancerSettings(),
        clock=clock,
        metrics=metrics,
    )

    for _ in range(8):
        await collect(layer)

    assert len(heavy.received) == 6
    assert len(light.received) == 2


async def test_open_circuit_endpoint_is_skipped() -> None:
    broken, healthy = make_backend("broken"), make_backend("healthy")
    clock, metrics = FakeClock(), Metrics()
    endpoints = [endpoint(broken, clock, metrics), endpoint(healthy, clock, metrics)]
    for _ in range(4):
        endpoints[0].breaker.record(OverloadedError("down", backend="broken"))
    layer = BalancerLayer(endpoints, BalancerSettings(), clock=clock, metrics=metrics)

    results = [served_by(await collect(layer)) for _ in range(3)]

    assert results == ["healthy"] * 3
    assert broken.received == []


async def test_all_circuits_open_raises_circuit_open() -> None:
    only = make_backend("only")
    clock, metrics = FakeClock(), Metrics()
    single = endpoint(only, clock, metrics)

    for _ in range(4):
        single.breaker.record(OverloadedError("down", backend="only"))
    layer = BalancerLayer([single], BalancerSettings(), clock=clock, metrics=metrics)

    with pytest.raises(CircuitOpenError) as caught:
        await collect(layer)

    assert "only is skipped for another 30 s" in str(caught.value)


async def test_rate_limit_wait_within_bound() -> None:
    only = make_backend("only")
    clock, metrics = FakeClock(), Metrics()
    layer = BalancerLayer(
        [endpoint(only, clock, metrics, rate=1.0)], BalancerSettings(max_wait_seconds=2.0), clock=clock, metrics=metrics
    )

    await collect(layer)
    await collect(layer)

    assert clock.sleeps == [1.0]
    assert len(only.received) == 2
    assert metrics.value("parley_rate_limit_wait_seconds_count", endpoint="only") == 2
    assert metrics.value("parley_rate_limit_wait_seconds_sum", endpoint="only") == 1.0


async def test_rate_limit_wait_over_bound_throttles() -> None:
    only = make_backend("only")
    clock, metrics = FakeClock(), Metrics()
    layer = BalancerLayer(
        [endpoint(only, clock, metrics, rate=1.0)], BalancerSettings(max_wait_seconds=0.5), clock=clock, metrics=metrics
    )

    await collect(layer)
    with pytest.raises(ThrottledError) as caught:
        await collect(layer)

    assert clock.sleeps == []
    assert len(only.received) == 1
    assert "every endpoint of m (only) is at its rate limit for over 0.5 s" in str(caught.value)


async def test_rate_limited_endpoint_overflows_to_next() -> None:
    limited, spare = make_backend("limited"), make_backend("spare")
    clock, metrics = FakeClock(), Metrics()
    layer = BalancerLayer(
        [endpoint(limited, clock, metrics, weight=10, rate=0.1), endpoint(spare, clock, metrics)],
        BalancerSettings(max_wait_seconds=1.0),
        clock=clock,
        metrics=metrics,
    )

    results = [served_by(await collect(layer)) for _ in range(3)]

    assert results == ["limited", "spare", "spare"]
    assert clock.sleeps == []


def test_token_bucket_refills_at_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2.0, burst=2, clock=clock)

    assert bucket.reserve_now(0) == 0
    assert bucket.reserve_now(0) == 0
    assert bucket.reserve_now(0) is None
    assert bucket.reserve_now(1.0) == pytest.approx(0.5)
    clock.advance(0.5)
    assert bucket.reserve_now(0) is None
    clock.advance(0.5)
    assert bucket.reserve_now(0) == 0
