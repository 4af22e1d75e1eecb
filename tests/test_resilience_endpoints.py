"""Several endpoints per backend from the config: balancing, circuits, rate limits and config errors."""

from __future__ import annotations

from typing import Any

import pytest

from backends.errors import ConfigError
from backends.layers.clock import FakeClock
from backends.layers.metrics import Metrics
from backends.layers.stack import open_services
from backends.pipeline import build_router
from backends.registry import BackendContext
from backends.router import Router
from backends.types import ChatRequest, Event, Finished, Message, TextDelta
from config import AppConfig, parse_config
from tests.fakes.openai_server import Behaviour, FakeOpenAIServer

LOCAL_REPLY = "Local model here."


def config(primary: str, resilience: dict[str, Any]) -> AppConfig:
    raw: dict[str, Any] = {
        "backends": [
            {
                "name": "remote",
                "kind": "openai",
                "base_url": primary,
                "api_key_env": "PRIMARY_KEY",
                "models": [{"name": "deepseek-chat", "fallback": ["smollm2"]}],
            },
            {"name": "local", "kind": "scripted", "models": [{"name": "smollm2"}], "replies": [{"text": LOCAL_REPLY}]},
        ],
        "resilience": {"retry": {"jitter": 0}, "cache": {"enabled": False}, **resilience},
    }
    return parse_config(raw, source="test config", env={})


def build(app_config: AppConfig) -> tuple[Router, Metrics, FakeClock]:
    clock, metrics = FakeClock(), Metrics()
    services = open_services(app_config.resilience, metrics=metrics, clock=clock)
    env = {"PRIMARY_KEY": "primary-secret", "SECOND_KEY": "second-secret"}
    return build_router(app_config, BackendContext(env=env), layers=services), metrics, clock


async def ask(router: Router, text: str = "hello") -> list[Event]:
    request = ChatRequest(messages=(Message.text("user", text),), model="deepseek-chat")
    return [event async for event in router.stream(request)]


def served_by(events: list[Event]) -> str:
    last = events[-1]
    assert isinstance(last, Finished)
    return last.served_by


async def test_failing_endpoint_is_skipped_once_its_circuit_opens(openai_server: FakeOpenAIServer) -> None:
    openai_server.default = Behaviour(status=503)
    async with FakeOpenAIServer(default=Behaviour(reply="from the second endpoint")) as second:
        section = {"endpoints": [{"base_url": second.base_url, "api_key_env": "SECOND_KEY"}]}
        router, metrics, clock = build(config(openai_server.base_url, {"backends": {"remote": section}}))

        first = await ask(router)
        for _ in range(7):
            await ask(router)
        primary_calls = len(openai_server.chat_requests)
        later = [await ask(router) for _ in range(4)]
        await router.aclose()

        assert served_by(first) == "remote-2/deepseek-chat after deepseek-chat: 503"
        assert primary_calls == 4
        assert len(openai_server.chat_requests) == 4
        assert all(served_by(events) == "remote-2/deepseek-chat" for events in later)
        assert len(second.chat_requests) == 12
        assert second.chat_requests[0].headers["authorization"] == "Bearer second-secret"
        assert openai_server.chat_requests[0].headers["authorization"] == "Bearer primary-secret"
        assert metrics.value("parley_circuit_state", endpoint="remote") == 2
        assert metrics.value("parley_circuit_state", endpoint="remote-2") == 0
        assert clock.sleeps == [1.0, 1.0, 1.0, 1.0]


async def test_weights_split_requests_between_endpoints(openai_server: FakeOpenAIServer) -> None:
    openai_server.default = Behaviour(reply="primary")
    async with FakeOpenAIServer(default=Behaviour(reply="secondary")) as second:
        section = {"weight": 2.0, "endpoints": [{"name": "mirror", "base_url": second.base_url, "weight": 1.0}]}
        router, _, _ = build(config(openai_server.base_url, {"backends": {"remote": section}}))

        replies = ["".join(e.text for e in await ask(router) if isinstance(e, TextDelta)) for _ in range(6)]
        await router.aclose()

    assert replies.count("primary") == 4
    assert replies.count("secondary") == 2
    assert "mirror" in router.backends


async def test_rate_limited_backend_falls_back(openai_server: FakeOpenAIServer) -> None:
    openai_server.default = Behaviour(reply="remote reply")
    resilience = {"backends": {"remote": {"requests_per_second": 0.5}}, "balancer": {"max_wait_seconds": 1.0}}
    router, metrics, clock = build(config(openai_server.base_url, resilience))

    first = await ask(router)
    second = await ask(router)
    await router.aclose()

    assert served_by(first) == "remote/deepseek-chat"
    assert served_by(second) == "local/smollm2 after deepseek-chat: throttled"
    assert len(openai_server.chat_requests) == 1
    assert clock.sleeps == []
    assert metrics.value("parley_fallbacks_total", model="deepseek-chat", to="smollm2") == 1


def test_section_for_unknown_backend_is_config_error() -> None:
    app_config = config("http://127.0.0.1:9/v1", {"backends": {"nope": {"requests_per_second": 1}}})

    with pytest.raises(ConfigError) as caught:
        build(app_config)

    assert "[resilience.backends.nope] names a backend that is not configured" in str(caught.value)
    assert "local, remote" in str(caught.value)


def test_endpoints_on_scripted_backend_is_config_error() -> None:
    app_config = config("http://127.0.0.1:9/v1", {"backends": {"local": {"endpoints": [{"base_url": "http://127.0.0.1:9/v1"}]}}})

    with pytest.raises(ConfigError) as caught:
        build(app_config)

    assert "a 'scripted' backend has no base_url" in str(caught.value)


def test_fallback_loop_in_config_is_config_error() -> None:
    raw: dict[str, Any] = {
        "backends": [
            {"name": "a", "kind": "scripted", "models": [{"name": "one", "fallback": ["two"]}]},
            {"name": "b", "kind": "scripted", "models": [{"name": "two", "fallback": ["one"]}]},
        ]
    }

    with pytest.raises(ConfigError) as caught:
        build_router(parse_config(raw, source="test config", env={}), BackendContext())

    assert "the fallback chain loops: one -> two -> one" in str(caught.value)
    assert "Remove 'one' from the fallback list of model 'two' (backend 'b'" in str(caught.value)


def test_redis_store_without_url_is_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        config("http://127.0.0.1:9/v1", {"cache": {"store": "redis"}})

    assert "resilience.redis_url" in str(caught.value)
