"""The whole layer stack against a misbehaving OpenAI-compatible server on 127.0.0.1.

Each test builds the router from a config, as the app does, over the fake
server (model "deepseek-chat" on backend "remote") with a scripted local
model ("smollm2" on backend "local") as its fallback. Backoff waits run on
a fake clock; only the backend's own timeouts use real time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pytest

from backends.errors import BadRequestError, ParleyError
from backends.layers.clock import FakeClock
from backends.layers.metrics import Metrics
from backends.layers.stack import open_services
from backends.pipeline import build_router
from backends.registry import BackendContext
from backends.router import Router
from backends.types import ChatRequest, Event, Finished, Message, Notice, TextDelta
from config import parse_config
from tests.fakes.openai_server import Behaviour, FakeOpenAIServer

REPLY = "The quick brown fox jumps over the lazy dog."
LOCAL_REPLY = "Local model here."
SECRET = "sk-test-secret-4f9a"


@dataclass
class Stack:
    router: Router
    clock: FakeClock
    metrics: Metrics
    server: FakeOpenAIServer

    async def ask(self, text: str = "Say the sentence.", **changes: Any) -> list[Event]:
        request = ChatRequest(messages=(Message.text("user", text),), model="deepseek-chat", **changes)
        return [event async for event in self.router.stream(request)]

    @property
    def upstream_requests(self) -> int:
        return len(self.server.chat_requests)

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.value(name, **labels)


def text_of(events: list[Event]) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))


def notices(events: list[Event]) -> list[str]:
    return [event.kind for event in events if isinstance(event, Notice)]


def finished(events: list[Event]) -> Finished:
    last = events[-1]
    assert isinstance(last, Finished)
    return last


def make_stack(
    server: FakeOpenAIServer,
    *,
    timeouts: dict[str, float] | None = None,
    retry_first_token_timeout: bool = True,
    resilience: dict[str, Any] | None = None,
) -> Stack:
    raw: dict[str, Any] = {
        "backends": [
            {
                "name": "remote",
                "kind": "openai",
                "base_url": server.base_url,
                "api_key_env": "REMOTE_API_KEY",
                "retry_first_token_timeout": retry_first_token_timeout,
                "timeouts": timeouts or {},
                "models": [{"name": "deepseek-chat", "upstream": "deepseek-v3", "fallback": ["smollm2"]}],
            },
            {"name": "local", "kind": "scripted", "models": [{"name": "smollm2"}], "replies": [{"text": LOCAL_REPLY}]},
        ],
        "resilience": {"retry": {"jitter": 0}, "cache": {"enabled": False}, **(resilience or {})},
    }
    config = parse_config(raw, source="test config", env={})
    clock, metrics = FakeClock(), Metrics()
    services = open_services(config.resilience, metrics=metrics, clock=clock)
    router = build_router(config, BackendContext(env={"REMOTE_API_KEY": SECRET}), layers=services)
    return Stack(router=router, clock=clock, metrics=metrics, server=server)


@pytest.fixture
async def stack(openai_server: FakeOpenAIServer) -> Any:
    openai_server.default = Behaviour(reply=REPLY)
    built = make_stack(openai_server)
    yield built
    await built.router.aclose()


async def test_two_503s_then_success(stack: Stack) -> None:
    stack.server.script(Behaviour(status=503), Behaviour(status=503))

    events = await stack.ask()

    assert stack.upstream_requests == 3
    assert stack.clock.sleeps == [1.0, 2.0]
    assert text_of(events) == REPLY
    assert notices(events) == ["retrying", "retrying"]
    assert finished(events).served_by == "remote/deepseek-chat after deepseek-chat: 503 ×2"
    assert stack.metric("parley_retries_total", backend="remote", model="deepseek-chat", code="overloaded") == 2
    assert stack.metric("parley_requests_total", backend="remote", model="deepseek-chat", outcome="ok") == 1
    assert stack.metric("parley_tokens_total", backend="remote", model="deepseek-chat", direction="out") > 0


async def test_429_retry_after_2_is_honoured(stack: Stack) -> None:
    stack.server.script(Behaviour(status=429, headers={"Retry-After": "2"}))

    events = await stack.ask()

    assert stack.upstream_requests == 2
    assert stack.clock.sleeps == [2.0]
    assert text_of(events) == REPLY
    assert finished(events).served_by == "remote/deepseek-chat after deepseek-chat: 429"
    assert stack.metric("parley_retries_total", backend="remote", model="deepseek-chat", code="rate_limited") == 1


async def test_429_retry_after_600_falls_back_at_once(stack: Stack) -> None:
    stack.server.script(Behaviour(status=429, headers={"Retry-After": "600"}))

    events = await stack.ask()

    assert stack.upstream_requests == 1
    assert stack.clock.sleeps == []
    assert text_of(events) == LOCAL_REPLY
    assert notices(events) == ["falling_back"]
    assert finished(events).served_by == "local/smollm2 after deepseek-chat: 429"
    assert stack.metric("parley_fallbacks_total", model="deepseek-chat", to="smollm2") == 1
    assert stack.metric("parley_requests_total", backend="local", model="deepseek-chat", outcome="ok") == 1


async def test_503_three_retries_then_fallback(stack: Stack) -> None:
    stack.server.default = Behaviour(status=503)

    events = await stack.ask()

    assert stack.upstream_requests == 4
    assert stack.clock.sleeps == [1.0, 2.0, 4.0]
    assert text_of(events) == LOCAL_REPLY
    assert finished(events).served_by == "local/smollm2 after deepseek-chat: 503 ×4"


async def test_400_is_neither_retried_nor_replaced(stack: Stack) -> None:
    stack.server.script(Behaviour(status=400))

    with pytest.raises(BadRequestError):
        await stack.ask()

    assert stack.upstream_requests == 1
    assert stack.clock.sleeps == []
    assert stack.metric("parley_fallbacks_total", model="deepseek-chat", to="smollm2") == 0
    assert stack.metric("parley_requests_total", backend="remote", model="deepseek-chat", outcome="error") == 1


async def test_401_opens_circuit_naming_key_variable(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    stack.server.default = Behaviour(status=401)

    first = await stack.ask()
    second = await stack.ask()

    assert stack.upstream_requests == 1
    assert stack.clock.sleeps == []
    assert text_of(first) == text_of(second) == LOCAL_REPLY
    assert finished(first).served_by == "local/smollm2 after deepseek-chat: 401"
    assert finished(second).served_by == "local/smollm2 after deepseek-chat: circuit_open"
    assert stack.metric("parley_circuit_state", endpoint="remote") == 2
    assert stack.metric("parley_circuit_opens_total", endpoint="remote", cause="401") == 1
    assert "REMOTE_API_KEY" in caplog.text
    assert SECRET not in caplog.text


async def test_402_opens_circuit_naming_balance(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    stack.server.default = Behaviour(status=402)

    first = await stack.ask()
    caplog.clear()
    second = await stack.ask()

    assert stack.upstream_requests == 1
    assert finished(first).served_by == "local/smollm2 after deepseek-chat: 402"
    assert finished(second).served_by == "local/smollm2 after deepseek-chat: circuit_open"
    assert "remote is skipped for another 300 s after 402" in caplog.text
    assert "Top up the account balance" in caplog.text
    assert stack.metric("parley_circuit_state", endpoint="remote") == 2


async def test_hang_retried_when_allowed(openai_server: FakeOpenAIServer) -> None:
    openai_server.default = Behaviour(reply=REPLY)
    openai_server.script(Behaviour(hang_before_first_byte=5.0))
    stack = make_stack(openai_server, timeouts={"first_token": 0.3})

    events = await stack.ask()
    await stack.router.aclose()

    assert stack.upstream_requests == 2
    assert stack.clock.sleeps == [1.0]
    assert text_of(events) == REPLY
    assert finished(events).served_by == "remote/deepseek-chat after deepseek-chat: timeout"
    assert stack.metric("parley_retries_total", backend="remote", model="deepseek-chat", code="timeout") == 1


async def test_hang_falls_back_when_not_retried(openai_server: FakeOpenAIServer) -> None:
    openai_server.default = Behaviour(hang_before_first_byte=5.0)
    stack = make_stack(openai_server, timeouts={"first_token": 0.3}, retry_first_token_timeout=False)

    events = await stack.ask()
    await stack.router.aclose()

    assert stack.upstream_requests == 1
    assert stack.clock.sleeps == []
    assert text_of(events) == LOCAL_REPLY
    assert finished(events).served_by == "local/smollm2 after deepseek-chat: timeout"
    assert stack.metric("parley_retries_total", backend="remote", model="deepseek-chat", code="timeout") == 0
    assert stack.metric("parley_fallbacks_total", model="deepseek-chat", to="smollm2") == 1


async def test_disconnect_before_first_chunk_is_retried(stack: Stack) -> None:
    stack.server.script(Behaviour(disconnect_after_chunks=0))

    events = await stack.ask()

    assert stack.upstream_requests == 2
    assert stack.clock.sleeps == [1.0]
    assert text_of(events) == REPLY
    assert finished(events).reason == "stop"
    assert finished(events).served_by == "remote/deepseek-chat after deepseek-chat: stream_incomplete"
    assert stack.metric("parley_retries_total", backend="remote", model="deepseek-chat", code="stream_incomplete") == 1


async def test_disconnect_after_first_chunk_keeps_partial_text(stack: Stack) -> None:
    stack.server.script(Behaviour(reply=REPLY, disconnect_after_chunks=3))

    events = await stack.ask()

    partial = text_of(events)
    assert stack.upstream_requests == 1
    assert stack.clock.sleeps == []
    assert partial == "The quick brown"
    assert REPLY.startswith(partial)
    assert notices(events) == ["interrupted"]
    end = finished(events)
    assert end.reason == "error"
    assert end.served_by == "remote/deepseek-chat after deepseek-chat: stream_incomplete"
    assert stack.metric("parley_requests_total", backend="remote", model="deepseek-chat", outcome="interrupted") == 1
    assert stack.metric("parley_fallbacks_total", model="deepseek-chat", to="smollm2") == 0


async def test_slow_drip_past_chunk_gap_is_interrupted(openai_server: FakeOpenAIServer) -> None:
    openai_server.default = Behaviour(reply="one two three four", chunk_delay=1.0)
    stack = make_stack(openai_server, timeouts={"chunk_gap": 0.3})

    events = await stack.ask()
    await stack.router.aclose()

    assert stack.upstream_requests == 1
    assert text_of(events) == "one"
    assert notices(events) == ["interrupted"]
    assert finished(events).served_by == "remote/deepseek-chat after deepseek-chat: timeout"
    assert stack.metric("parley_requests_total", backend="remote", model="deepseek-chat", outcome="interrupted") == 1


async def test_slow_drip_within_limits_completes(openai_server: FakeOpenAIServer) -> None:
    openai_server.default = Behaviour(reply="one two three", chunk_delay=0.05)
    stack = make_stack(openai_server, timeouts={"chunk_gap": 2.0})

    events = await stack.ask()
    await stack.router.aclose()

    assert text_of(events) == "one two three"
    assert finished(events).served_by == "remote/deepseek-chat"
    assert stack.metric("parley_requests_total", backend="remote", model="deepseek-chat", outcome="ok") == 1


async def test_malformed_sse_before_text_is_retried(stack: Stack) -> None:
    stack.server.script(Behaviour(malformed_after=0))

    events = await stack.ask()

    assert stack.upstream_requests == 2
    assert stack.clock.sleeps == [1.0]
    assert text_of(events) == REPLY
    assert finished(events).served_by == "remote/deepseek-chat after deepseek-chat: stream_incomplete"
    assert stack.metric("parley_retries_total", backend="remote", model="deepseek-chat", code="stream_incomplete") == 1


async def test_malformed_sse_after_text_is_interrupted(stack: Stack) -> None:
    stack.server.script(Behaviour(reply=REPLY, malformed_after=2))

    events = await stack.ask()

    assert stack.upstream_requests == 1
    assert stack.clock.sleeps == []
    assert text_of(events) == "The quick"
    assert notices(events) == ["interrupted"]
    assert finished(events).served_by == "remote/deepseek-chat after deepseek-chat: stream_incomplete"
    assert stack.metric("parley_requests_total", backend="remote", model="deepseek-chat", outcome="interrupted") == 1


async def test_error_object_mid_stream_is_interrupted(stack: Stack) -> None:
    stack.server.script(Behaviour(reply=REPLY, error_mid_stream_after=2))

    events = await stack.ask()

    assert stack.upstream_requests == 1
    assert text_of(events) == "The quick"
    assert notices(events) == ["interrupted"]
    assert finished(events).reason == "error"
    assert finished(events).served_by == "remote/deepseek-chat after deepseek-chat: 500"
    assert stack.metric("parley_retries_total", backend="remote", model="deepseek-chat", code="overloaded") == 0
    assert stack.metric("parley_requests_total", backend="remote", model="deepseek-chat", outcome="interrupted") == 1


async def test_cache_hit_skips_upstream(openai_server: FakeOpenAIServer) -> None:
    openai_server.default = Behaviour(reply=REPLY)
    stack = make_stack(openai_server, resilience={"cache": {"enabled": True}})

    first = await stack.ask()
    second = await stack.ask()
    await stack.router.aclose()

    assert stack.upstream_requests == 1
    assert text_of(first) == text_of(second) == REPLY
    assert notices(second) == ["cached"]
    assert finished(second).cached is True
    assert finished(second).served_by == "remote/deepseek-chat"
    assert stack.metric("parley_cache_lookups_total", model="deepseek-chat", result="hit") == 1
    assert stack.metric("parley_requests_total", backend="remote", model="deepseek-chat", outcome="cached") == 1


async def test_fallback_reply_is_not_cached(openai_server: FakeOpenAIServer) -> None:
    openai_server.default = Behaviour(reply=REPLY)
    openai_server.script(Behaviour(status=429, headers={"Retry-After": "600"}))
    stack = make_stack(openai_server, resilience={"cache": {"enabled": True}})

    replaced = await stack.ask()
    fresh = await stack.ask()
    await stack.router.aclose()

    assert text_of(replaced) == LOCAL_REPLY
    assert text_of(fresh) == REPLY
    assert stack.upstream_requests == 2
    assert stack.metric("parley_cache_lookups_total", model="deepseek-chat", result="miss") == 2


async def test_total_timeout_ends_steady_drip(openai_server: FakeOpenAIServer) -> None:
    openai_server.default = Behaviour(reply="one two three four five six seven eight", chunk_delay=0.15)
    stack = make_stack(openai_server, timeouts={"chunk_gap": 5.0, "total": 0.5})

    events = await stack.ask()
    await stack.router.aclose()

    partial = text_of(events)
    assert stack.upstream_requests == 1
    assert partial.startswith("one")
    assert len(partial) < len("one two three four five six seven eight")
    assert notices(events) == ["interrupted"]
    assert finished(events).reason == "error"
    assert finished(events).served_by == "remote/deepseek-chat after deepseek-chat: timeout"
    assert stack.metric("parley_requests_total", backend="remote", model="deepseek-chat", outcome="interrupted") == 1
