"""The metrics layer, its log line and the Grafana dashboard over its metric names."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from backends import scripted
from backends.errors import OverloadedError
from backends.layers.clock import FakeClock
from backends.layers.metrics import Metrics, MetricsLayer
from backends.registry import BackendContext
from backends.types import ChatRequest, Message

DASHBOARD = Path(__file__).resolve().parents[1] / "assets" / "grafana-dashboard.json"


def make_layer(*replies: dict[str, Any]) -> tuple[MetricsLayer, Metrics]:
    settings = scripted.Settings(
        name="peer", kind="scripted", cycle=False, models=[{"name": "m"}], replies=list(replies)
    )
    metrics = Metrics()
    return MetricsLayer(scripted.create(settings, BackendContext()), metrics, FakeClock()), metrics


def request() -> ChatRequest:
    return ChatRequest(messages=(Message.text("user", "hello there"),), model="m")


async def test_successful_reply_is_counted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="backends.layers.metrics")
    layer, metrics = make_layer({"text": "one two three", "prompt_tokens": 7, "completion_tokens": 3})

    [event async for event in layer.stream(request())]

    assert metrics.value("parley_requests_total", backend="peer", model="m", outcome="ok") == 1
    assert metrics.value("parley_tokens_total", backend="peer", model="m", direction="in") == 7
    assert metrics.value("parley_tokens_total", backend="peer", model="m", direction="out") == 3
    assert metrics.value("parley_time_to_first_token_seconds_count", backend="peer", model="m") == 1
    assert metrics.value("parley_request_duration_seconds_count", backend="peer", model="m") == 1
    lines = [record.getMessage() for record in caplog.records if record.name == "backends.layers.metrics"]
    assert len(lines) == 1
    assert lines[0].startswith("model call model=m served_by=peer/m outcome=ok latency=0.000s")
    assert "cached=False failures=-" in lines[0]


async def test_failed_reply_is_counted_as_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="backends.layers.metrics")
    layer, metrics = make_layer({"error": "overloaded"})

    with pytest.raises(OverloadedError):
        [event async for event in layer.stream(request())]

    assert metrics.value("parley_requests_total", backend="peer", model="m", outcome="error") == 1
    assert metrics.value("parley_time_to_first_token_seconds_count", backend="peer", model="m") == 0
    lines = [record.getMessage() for record in caplog.records if record.name == "backends.layers.metrics"]
    assert len(lines) == 1
    assert "outcome=error" in lines[0]
    assert "error=overloaded" in lines[0]


async def test_abandoned_reply_is_counted_as_cancelled() -> None:
    layer, metrics = make_layer({"text": "one two three"})

    stream = layer.stream(request())
    await anext(stream)
    await stream.aclose()

    assert metrics.value("parley_requests_total", backend="peer", model="m", outcome="cancelled") == 1


def test_registries_are_independent() -> None:
    first, second = Metrics(), Metrics()
    first.retries.labels(backend="b", model="m", code="overloaded").inc()

    assert first.value("parley_retries_total", backend="b", model="m", code="overloaded") == 1
    assert second.value("parley_retries_total", backend="b", model="m", code="overloaded") == 0


def exposed_sample_names(metrics: Metrics) -> set[str]:
    names: set[str] = set()
    for family in metrics.registry.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return names


def test_dashboard_queries_only_exposed_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exposed = exposed_sample_names(Metrics())

    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"parley_[a-z_]+", target["expr"])
    }

    assert len(dashboard["panels"]) >= 10
    assert queried
    assert queried - exposed == set()
    assert {"parley_requests_total", "parley_retries_total", "parley_fallbacks_total", "parley_circuit_state"} <= queried
