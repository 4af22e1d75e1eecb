"""The retry layer alone, over the scripted backend, with a fake clock."""

from __future__ import annotations

from typing import Any

import pytest

from backends import scripted
from backends.errors import BadRequestError, OverloadedError, RateLimitedError
from backends.layers.clock import FakeClock
from backends.layers.metrics import Metrics
from backends.layers.retry import RetryLayer, RetrySettings, describe_failures
from backends.registry import BackendContext
from backends.types import ChatRequest, Event, Finished, Message, Notice, TextDelta


def make_backend(*replies: dict[str, Any]) -> scripted.ScriptedBackend:
    settings = scripted.Settings(
        name="peer", kind="scripted", cycle=False, models=[{"name": "m"}], replies=list(replies)
    )
    backend = scripted.create(settings, BackendContext())
    assert isinstance(backend, scripted.ScriptedBackend)
    return backend


def request() -> ChatRequest:
    return ChatRequest(messages=(Message.text("user", "hi"),), model="m")


async def collect(layer: RetryLayer) -> list[Event]:
    return [event async for event in layer.stream(request())]


def make_layer(
    backend: scripted.ScriptedBackend, clock: FakeClock, metrics: Metrics, **settings: Any
) -> RetryLayer:
    return RetryLayer(
        backend,
        RetrySettings(**{"jitter": 0.0, **settings}),
        clock=clock,
        metrics=metrics,
        rng=lambda: 0.5,
    )


async def test_retry_recovers_after_two_overloads() -> None:
    backend = make_backend(
        {"error": "overloaded"}, {"error": "overloaded"}, {"text": "fine now"}
    )
    clock, metrics = FakeClock(), Metrics()

    events = await collect(make_layer(backend, clock, metrics))

    assert len(backend.received) == 3
    assert clock.sleeps == [1.0, 2.0]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "fine now"
    notices = [e for e in events if isinstance(e, Notice)]
    assert [n.kind for n in notices] == ["retrying", "retrying"]
    assert "attempt 2 of 4" in notices[0].message
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert finished.failures == ("m: overloaded ×2",)
    assert metrics.value("parley_retries_total", backend="peer", model="m", code="overloaded") == 2


async def test_retry_gives_up_after_three_retries() -> None:
    backend = make_backend({"error": "overloaded"})
    clock = FakeClock()

    with pytest.raises(OverloadedError) as caught:
        await collect(make_layer(backend, clock, Metrics()))

    assert len(backend.received) == 4
    assert clock.sleeps == [1.0, 2.0, 4.0]
    assert caught.value.params["attempt_labels"] == ("overloaded",) * 4


async def test_retry_adds_jitter_within_its_fraction() -> None:
    backend = make_backend({"error": "overloaded"}, {"text": "ok"})
    clock = FakeClock()
    layer = RetryLayer(backend, RetrySettings(jitter=0.1), clock=clock, metrics=Metrics(), rng=lambda: 0.5)

    await collect(layer)

    assert clock.sleeps == [pytest.approx(1.05)]


async def test_retry_after_is_honoured() -> None:
    backend = make_backend({"error": "rate_limited", "retry_after": 2.0}, {"text": "ok"})
    clock = FakeClock()

    events = await collect(make_layer(backend, clock, Metrics()))

    assert clock.sleeps == [2.0]
    assert len(backend.received) == 2
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "ok"


async def test_retry_after_over_limit_raises_at_once() -> None:
    backend = make_backend({"error": "rate_limited", "retry_after": 600.0}, {"text": "ok"})
    clock = FakeClock()

    with pytest.raises(RateLimitedError):
        await collect(make_layer(backend, clock, Metrics()))

    assert len(backend.received) == 1
    assert clock.sleeps == []


async def test_non_retryable_error_is_not_retried() -> None:
    backend = make_backend({"error": "bad_request"}, {"text": "ok"})
    clock = FakeClock()

    with pytest.raises(BadRequestError):
        await collect(make_layer(backend, clock, Metrics()))

    assert len(backend.received) == 1
    assert clock.sleeps == []


async def test_failure_after_first_text_is_not_retried() -> None:
    backend = make_backend({"text": "one two three", "error": "overloaded", "error_after_chunks": 2}, {"text": "x"})
    clock = FakeClock()
    seen: list[Event] = []

    with pytest.raises(OverloadedError):
        async for event in make_layer(backend, clock, Metrics()).stream(request()):
            seen.append(event)

    assert len(backend.received) == 1
    assert "".join(e.text for e in seen if isinstance(e, TextDelta)) == "one two "


def test_describe_failures_groups_runs() -> None:
    assert describe_failures("deepseek-chat", ["503", "503", "503"]) == "deepseek-chat: 503 ×3"
    assert describe_failures("m", ["503", "timeout"]) == "m: 503, timeout"
    assert describe_failures("m", ["429"]) == "m: 429"
