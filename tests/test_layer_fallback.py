"""The fallback layer alone, over scripted backends, and the chain validation."""

from __future__ import annotations

from typing import Any

import pytest

from backends import scripted
from backends.errors import (
    AuthError,
    BadRequestError,
    ConfigError,
    ConnectionFailedError,
    ContextTooLongError,
    ImageNotSupportedError,
    InsufficientBalanceError,
    OverloadedError,
    ParleyError,
)
from backends.layers.clock import FakeClock
from backends.layers.fallback import CANNED_MODEL, ChainStep, FallbackLayer, FallbackSettings, expand_chains
from backends.layers.metrics import Metrics
from backends.layers.retry import RetryLayer, RetrySettings
from backends.registry import BackendContext
from backends.types import ChatRequest, Event, Finished, Message, Notice, TextDelta


def make_backend(name: str, model: str, *replies: dict[str, Any]) -> scripted.ScriptedBackend:
    settings = scripted.Settings(
        name=name, kind="scripted", cycle=False, models=[{"name": model}], replies=list(replies)
    )
    backend = scripted.create(settings, BackendContext())
    assert isinstance(backend, scripted.ScriptedBackend)
    return backend


def request(language: str = "en") -> ChatRequest:
    return ChatRequest(messages=(Message.text("user", "hi"),), model="primary", language=language)


async def collect(layer: FallbackLayer, chat: ChatRequest | None = None) -> list[Event]:
    return [event async for event in layer.stream(chat or request())]


def text_of(events: list[Event]) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))


def retried(backend: scripted.ScriptedBackend, clock: FakeClock, metrics: Metrics) -> RetryLayer:
    return RetryLayer(backend, RetrySettings(jitter=0.0), clock=clock, metrics=metrics)


async def test_failed_model_falls_back_to_next() -> None:
    primary = make_backend("remote", "primary", {"error": "overloaded"})
    secondary = make_backend("local", "secondary", {"text": "from the local model"})
    clock, metrics = FakeClock(), Metrics()
    layer = FallbackLayer(
        [ChainStep("primary", retried(primary, clock, metrics)), ChainStep("secondary", secondary)],
        FallbackSettings(),
        metrics=metrics,
    )

    events = await collect(layer)

    assert len(primary.received) == 4
    assert len(secondary.received) == 1
    assert secondary.received[0].model == "secondary"
    assert text_of(events) == "from the local model"
    notices = [event.kind for event in events if isinstance(event, Notice)]
    assert notices == ["retrying", "retrying", "retrying", "falling_back"]
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert finished.served_by == "local/secondary after primary: overloaded ×4"
    assert metrics.value("parley_fallbacks_total", model="primary", to="secondary") == 1


async def test_canned_reply_in_user_language_ends_chain() -> None:
    primary = make_backend("remote", "primary", {"error": "connection_failed"})
    secondary = make_backend("local", "secondary", {"error": "overloaded"})
    metrics = Metrics()
    layer = FallbackLayer(
        [ChainStep("primary", primary), ChainStep("secondary", secondary)], FallbackSettings(), metrics=metrics
    )

    events = await collect(layer, request("zh-CN"))

    assert text_of(events) == "抱歉，目前没有模型可以回答。请过几分钟再试。"
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert finished.reason == "stop"
    assert finished.served_by == "parley/canned-reply after primary: connection_failed, secondary: overloaded"
    falling = [event for event in events if isinstance(event, Notice)]
    assert len(falling) == 2
    assert "改用 secondary" in falling[0].message
    assert metrics.value("parley_fallbacks_total", model="primary", to="canned-reply") == 1


async def test_configured_canned_text_is_used() -> None:
    primary = make_backend("remote", "primary", {"error": "overloaded"})
    settings = FallbackSettings(canned_text={"en": "Back soon.", "zh-CN": "马上回来。"})
    layer = FallbackLayer([ChainStep("primary", primary)], settings, metrics=Metrics())

    assert text_of(await collect(layer, request("en"))) == "Back soon."
    assert text_of(await collect(layer, request("fr"))) == "Back soon."
    assert text_of(await collect(layer, request("zh-CN"))) == "马上回来。"


async def test_without_canned_reply_last_error_is_raised() -> None:
    primary = make_backend("remote", "primary", {"error": "overloaded"})
    layer = FallbackLayer([ChainStep("primary", primary)], FallbackSettings(canned_reply=False), metrics=Metrics())

    with pytest.raises(OverloadedError) as caught:
        await collect(layer)

    assert caught.value.params["failures"] == ("primary: overloaded",)


async def test_request_without_canned_reply_still_falls_back() -> None:
    primary = make_backend("remote", "primary", {"error": "connection_failed"})
    secondary = make_backend("local", "secondary", {"text": "from the local model"})
    layer = FallbackLayer(
        [ChainStep("primary", primary), ChainStep("secondary", secondary)], FallbackSettings(), metrics=Metrics()
    )
    chat = ChatRequest(messages=(Message.text("user", "hi"),), model="primary", allow_canned_reply=False)

    events = await collect(layer, chat)

    assert text_of(events) == "from the local model"
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert finished.served_by == "local/secondary after primary: connection_failed"


async def test_request_without_canned_reply_raises_last_error() -> None:
    primary = make_backend("remote", "primary", {"error": "overloaded"})
    secondary = make_backend("local", "secondary", {"error": "connection_failed"})
    metrics = Metrics()
    layer = FallbackLayer(
        [ChainStep("primary", primary), ChainStep("secondary", secondary)], FallbackSettings(), metrics=metrics
    )
    chat = ChatRequest(messages=(Message.text("user", "hi"),), model="primary", allow_canned_reply=False)
    events: list[Event] = []

    with pytest.raises(ConnectionFailedError) as caught:
        async for event in layer.stream(chat):
            events.append(event)

    assert caught.value.params["failures"] == ("primary: overloaded", "secondary: connection_failed")
    assert text_of(events) == ""
    assert [event.kind for event in events if isinstance(event, Notice)] == ["falling_back"]
    assert metrics.value("parley_fallbacks_total", model="primary", to=CANNED_MODEL) == 0


async def test_context_overflow_falls_back_to_next_model() -> None:
    primary = make_backend("remote", "primary", {"error": "context_too_long"})
    secondary = make_backend("local", "secondary", {"text": "a longer context fits"})
    layer = FallbackLayer(
        [ChainStep("primary", primary), ChainStep("secondary", secondary)], FallbackSettings(), metrics=Metrics()
    )

    events = await collect(layer)

    assert text_of(events) == "a longer context fits"
    assert len(secondary.received) == 1


async def test_context_overflow_never_ends_in_canned_reply() -> None:
    primary = make_backend("remote", "primary", {"error": "context_too_long", "error_message": "prompt is 9000 tokens"})
    secondary = make_backend("local", "secondary", {"error": "overloaded"})
    metrics = Metrics()
    layer = FallbackLayer(
        [ChainStep("primary", primary), ChainStep("secondary", secondary)], FallbackSettings(), metrics=metrics
    )
    events: list[Event] = []

    with pytest.raises(ContextTooLongError) as caught:
        async for event in layer.stream(request()):
            events.append(event)

    assert "prompt is 9000 tokens" in str(caught.value)
    assert caught.value.params["failures"] == ("primary: context_too_long", "secondary: overloaded")
    assert text_of(events) == ""
    assert [event.kind for event in events if isinstance(event, Notice)] == ["falling_back"]
    assert metrics.value("parley_fallbacks_total", model="primary", to=CANNED_MODEL) == 0


async def test_image_not_supported_never_ends_in_canned_reply() -> None:
    primary = make_backend("remote", "primary", {"error": "image_not_supported"})
    layer = FallbackLayer([ChainStep("primary", primary)], FallbackSettings(), metrics=Metrics())

    with pytest.raises(ImageNotSupportedError) as caught:
        await collect(layer)

    assert caught.value.params["failures"] == ("primary: image_not_supported",)


async def test_failure_after_text_interrupts_without_fallback() -> None:
    primary = make_backend(
        "remote", "primary", {"text": "one two three four", "error": "stream_incomplete", "error_after_chunks": 2}
    )
    secondary = make_backend("local", "secondary", {"text": "never sent"})
    layer = FallbackLayer(
        [ChainStep("primary", primary), ChainStep("secondary", secondary)], FallbackSettings(), metrics=Metrics()
    )

    events = await collect(layer)

    assert text_of(events) == "one two "
    assert secondary.received == []
    assert isinstance(events[-2], Notice)
    assert events[-2].kind == "interrupted"
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert finished.reason == "error"
    assert finished.served_by == "remote/primary after primary: stream_incomplete"


async def test_bad_request_does_not_fall_back() -> None:
    primary = make_backend("remote", "primary", {"error": "bad_request"})
    secondary = make_backend("local", "secondary", {"text": "never sent"})
    layer = FallbackLayer(
        [ChainStep("primary", primary), ChainStep("secondary", secondary)], FallbackSettings(), metrics=Metrics()
    )

    with pytest.raises(BadRequestError):
        await collect(layer)

    assert secondary.received == []


def test_chains_expand_depth_first_once_each() -> None:
    fallbacks = {"a": ["b", "c"], "b": ["c", "d"], "c": [], "d": []}
    owners = {name: "backend" for name in fallbacks}

    chains = expand_chains(fallbacks, owners)

    assert chains["a"] == ["a", "b", "c", "d"]
    assert chains["b"] == ["b", "c", "d"]
    assert chains["d"] == ["d"]


def test_looping_chain_is_a_config_error() -> None:
    fallbacks = {"deepseek-chat": ["qwen"], "qwen": ["smollm2", "deepseek-chat"], "smollm2": []}
    owners = {"deepseek-chat": "deepseek", "qwen": "dashscope", "smollm2": "local"}

    with pytest.raises(ConfigError) as caught:
        expand_chains(fallbacks, owners)

    message = str(caught.value)
    assert "deepseek-chat -> qwen -> deepseek-chat" in message
    assert "Remove 'deepseek-chat' from the fallback list of model 'qwen'" in message
    assert "'dashscope'" in message


def test_unknown_fallback_model_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        expand_chains({"a": ["nope"]}, {"a": "remote"})

    assert "names unknown model 'nope'" in str(caught.value)
    assert "configured models (a)" in str(caught.value)


@pytest.mark.parametrize(
    ("code", "error_class"), [("auth_failed", AuthError), ("insufficient_balance", InsufficientBalanceError)]
)
async def test_account_failure_falls_back_but_never_ends_in_canned_reply(
    code: str, error_class: type[ParleyError]
) -> None:
    primary = make_backend("remote", "primary", {"error": code, "error_message": "HTTP 401 from upstream"})
    secondary = make_backend("local", "secondary", {"error": "overloaded"})
    metrics = Metrics()
    layer = FallbackLayer(
        [ChainStep("primary", primary), ChainStep("secondary", secondary)], FallbackSettings(), metrics=metrics
    )
    events: list[Event] = []

    with pytest.raises(error_class) as caught:
        async for event in layer.stream(request()):
            events.append(event)

    assert caught.value.code == code
    assert caught.value.params["failures"] == (f"primary: {code}", "secondary: overloaded")
    assert len(secondary.received) == 1
    assert text_of(events) == ""
    assert metrics.value("parley_fallbacks_total", model="primary", to=CANNED_MODEL) == 0


async def test_account_failure_still_lets_the_next_model_answer() -> None:
    primary = make_backend("remote", "primary", {"error": "auth_failed"})
    secondary = make_backend("local", "secondary", {"text": "served by the local model"})
    layer = FallbackLayer(
        [ChainStep("primary", primary), ChainStep("secondary", secondary)], FallbackSettings(), metrics=Metrics()
    )

    events = await collect(layer)

    assert text_of(events) == "served by the local model"
    finished = [event for event in events if isinstance(event, Finished)]
    assert finished[-1].failures == ("primary: auth_failed",)
