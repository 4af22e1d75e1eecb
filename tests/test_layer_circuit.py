"""The circuit breaker, through a balancer with one endpoint over the scripted backend, with a fake clock."""

from __future__ import annotations

from typing import Any

import pytest

from backends import scripted
from backends.errors import AuthError, BadRequestError, InsufficientBalanceError, OverloadedError
from backends.layers.balancer import BalancerLayer, BalancerSettings, Endpoint
from backends.layers.circuit import CircuitBreaker, CircuitSettings
from backends.layers.clock import FakeClock
from backends.layers.errors import CircuitOpenError
from backends.layers.metrics import Metrics
from backends.registry import BackendContext
from backends.types import ChatRequest, Event, Message, TextDelta


def make_backend(*replies: dict[str, Any], cycle: bool = False) -> scripted.ScriptedBackend:
    settings = scripted.Settings(
        name="remote", kind="scripted", cycle=cycle, models=[{"name": "m"}], replies=list(replies)
    )
    backend = scripted.create(settings, BackendContext())
    assert isinstance(backend, scripted.ScriptedBackend)
    return backend


class Guarded:
    """One endpoint behind its breaker, as the balancer serves it."""

    def __init__(self, backend: scripted.ScriptedBackend, clock: FakeClock, metrics: Metrics, **settings: Any) -> None:
        self.breaker = CircuitBreaker("remote", CircuitSettings(**settings), clock, metrics)
        endpoint = Endpoint(backend=backend, breaker=self.breaker)
        self.balancer = BalancerLayer([endpoint], BalancerSettings(), clock=clock, metrics=metrics)

    def stream(self, chat: ChatRequest) -> Any:
        return self.balancer.stream(chat)


def make_layer(backend: scripted.ScriptedBackend, clock: FakeClock, metrics: Metrics, **settings: Any) -> Guarded:
    return Guarded(backend, clock, metrics, **settings)


def request() -> ChatRequest:
    return ChatRequest(messages=(Message.text("user", "hi"),), model="m")


async def call(layer: Guarded) -> list[Event] | Exception:
    try:
        return [event async for event in layer.stream(request())]
    except Exception as error:  # the test inspects each outcome
        return error


def state(metrics: Metrics) -> float:
    return metrics.value("parley_circuit_state", endpoint="remote")


async def test_opens_when_most_calls_fail() -> None:
    backend = make_backend({"error": "overloaded"}, {"error": "overloaded"}, {"text": "ok"}, {"error": "overloaded"})
    clock, metrics = FakeClock(), Metrics()
    layer = make_layer(backend, clock, metrics)

    outcomes = [await call(layer) for _ in range(4)]
    turned_away = await call(layer)

    assert [type(outcome) for outcome in outcomes] == [OverloadedError, OverloadedError, list, OverloadedError]
    assert isinstance(turned_away, CircuitOpenError)
    assert len(backend.received) == 4
    assert layer.breaker.state == "open"
    assert state(metrics) == 2
    assert metrics.value("parley_circuit_opens_total", endpoint="remote", cause="overloaded") == 1


async def test_stays_closed_at_half_failures() -> None:
    backend = make_backend({"text": "ok"}, {"error": "overloaded"}, cycle=True)
    layer = make_layer(backend, FakeClock(), Metrics())

    for _ in range(6):
        await call(layer)

    assert layer.breaker.state == "closed"
    assert len(backend.received) == 6


async def test_needs_minimum_calls_before_opening() -> None:
    backend = make_backend({"error": "overloaded"})
    layer = make_layer(backend, FakeClock(), Metrics())

    for _ in range(3):
        await call(layer)

    assert layer.breaker.state == "closed"


async def test_old_failures_leave_the_window() -> None:
    backend = make_backend({"error": "overloaded"}, {"error": "overloaded"}, {"error": "overloaded"}, {"text": "ok"})
    clock = FakeClock()
    layer = make_layer(backend, clock, Metrics())

    for _ in range(3):
        await call(layer)
    clock.advance(61)
    await call(layer)

    assert layer.breaker.state == "closed"


async def test_half_open_probe_success_closes() -> None:
    backend = make_backend(*[{"error": "overloaded"}] * 4, {"text": "one two three"})
    clock, metrics = FakeClock(), Metrics()
    layer = make_layer(backend, clock, metrics, cooldown_seconds=30)
    for _ in range(4):
        await call(layer)

    clock.advance(29.4)
    cooling = await call(layer)
    assert isinstance(cooling, CircuitOpenError)
    assert "skipped for another 1 s after" in str(cooling)
    clock.advance(0.6)
    probe = layer.stream(request())
    first = await anext(probe)
    gauge_while_probing = state(metrics)
    second_while_probing = await call(layer)
    rest = [event async for event in probe]

    assert isinstance(first, TextDelta)
    assert gauge_while_probing == 1
    assert isinstance(second_while_probing, CircuitOpenError)
    assert "while one probe request checks whether it has recovered" in str(second_while_probing)
    assert len(rest) > 0
    assert layer.breaker.state == "closed"
    assert state(metrics) == 0
    assert len(backend.received) == 5


async def test_half_open_probe_failure_reopens() -> None:
    backend = make_backend({"error": "overloaded"})
    clock = FakeClock()
    layer = make_layer(backend, clock, Metrics(), cooldown_seconds=30)
    for _ in range(4):
        await call(layer)

    clock.advance(30)
    probe_outcome = await call(layer)
    after = await call(layer)

    assert isinstance(probe_outcome, OverloadedError)
    assert isinstance(after, CircuitOpenError)
    assert len(backend.received) == 5


async def test_cancelled_probe_lets_next_request_probe() -> None:
    backend = make_backend(*[{"error": "overloaded"}] * 4, {"text": "one two"})
    clock = FakeClock()
    layer = make_layer(backend, clock, Metrics())
    for _ in range(4):
        await call(layer)

    clock.advance(30)
    probe = layer.stream(request())
    await anext(probe)
    await probe.aclose()

    assert layer.breaker.available()


@pytest.mark.parametrize(
    ("code", "error_class"), [("auth_failed", AuthError), ("insufficient_balance", InsufficientBalanceError)]
)
async def test_auth_and_balance_errors_open_at_once(code: str, error_class: type[Exception]) -> None:
    backend = make_backend({"error": code})
    clock, metrics = FakeClock(), Metrics()
    layer = make_layer(backend, clock, metrics, auth_cooldown_seconds=300)

    first = await call(layer)
    second = await call(layer)
    clock.advance(299)
    still_open = await call(layer)

    assert isinstance(first, error_class)
    assert isinstance(second, CircuitOpenError)
    assert isinstance(still_open, CircuitOpenError)
    assert second.fix == first.fix
    assert f"after {code}" in str(second)
    assert len(backend.received) == 1
    assert state(metrics) == 2


async def test_request_errors_do_not_count() -> None:
    backend = make_backend({"error": "bad_request"})
    layer = make_layer(backend, FakeClock(), Metrics())

    outcomes = [await call(layer) for _ in range(6)]

    assert all(isinstance(outcome, BadRequestError) for outcome in outcomes)
    assert layer.breaker.state == "closed"
