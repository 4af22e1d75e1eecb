"""The cache layer alone, over the scripted backend, with the memory store and a fake clock."""

from __future__ import annotations

from typing import Any

import pytest

from backends import scripted
from backends.errors import OverloadedError, StreamIncompleteError
from backends.layers.cache import CacheLayer, CacheSettings, cache_key
from backends.layers.cache_store import MemoryStore
from backends.layers.clock import FakeClock
from backends.layers.metrics import Metrics
from backends.registry import BackendContext
from backends.types import (
    ChatRequest,
    Event,
    Finished,
    ImagePart,
    Message,
    Notice,
    ReasoningDelta,
    SamplingParams,
    TextDelta,
)


def make_backend(*replies: dict[str, Any]) -> scripted.ScriptedBackend:
    settings = scripted.Settings(
        name="peer", kind="scripted", cycle=False, models=[{"name": "m", "upstream": "m-1"}], replies=list(replies)
    )
    backend = scripted.create(settings, BackendContext())
    assert isinstance(backend, scripted.ScriptedBackend)
    return backend


def make_cache(
    backend: scripted.ScriptedBackend, clock: FakeClock | None = None, **settings: Any
) -> tuple[CacheLayer, MemoryStore, Metrics]:
    cache_settings = CacheSettings(**settings)
    store = MemoryStore(cache_settings.max_entries, cache_settings.ttl_seconds, clock or FakeClock())
    metrics = Metrics()
    layer = CacheLayer(backend, store, cache_settings, backend="peer", upstream_model="m-1", metrics=metrics)
    return layer, store, metrics


def request(text: str = "hi", **changes: Any) -> ChatRequest:
    return ChatRequest(messages=(Message.text("user", text),), model="m", **changes)


async def collect(layer: CacheLayer, chat: ChatRequest) -> list[Event]:
    return [event async for event in layer.stream(chat)]


def text_of(events: list[Event]) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))


async def test_hit_replays_without_upstream_call() -> None:
    backend = make_backend({"text": "cached words", "reasoning": "think first"})
    layer, _, metrics = make_cache(backend)

    first = await collect(layer, request())
    second = await collect(layer, request())

    assert len(backend.received) == 1
    assert text_of(first) == text_of(second) == "cached words"
    assert isinstance(second[0], Notice)
    assert second[0].kind == "cached"
    # No Usage: the entry stores no token counts, so a hit reports none.
    assert [type(event) for event in second[1:]] == [ReasoningDelta, TextDelta, Finished]
    assert second[1] == ReasoningDelta("think first")
    finished = second[-1]
    assert isinstance(finished, Finished)
    assert finished.cached is True
    assert finished.reason == "stop"
    assert finished.served_by == "peer/m"
    assert metrics.value("parley_cache_lookups_total", model="m", result="miss") == 1
    assert metrics.value("parley_cache_lookups_total", model="m", result="hit") == 1


async def test_error_reply_is_not_stored() -> None:
    backend = make_backend({"error": "overloaded"}, {"text": "later"})
    layer, store, _ = make_cache(backend)

    with pytest.raises(OverloadedError):
        await collect(layer, request())

    assert len(store) == 0
    assert text_of(await collect(layer, request())) == "later"
    assert len(backend.received) == 2


async def test_cut_off_stream_is_not_stored() -> None:
    backend = make_backend({"text": "one two three", "error": "stream_incomplete", "error_after_chunks": 2})
    layer, store, _ = make_cache(backend)

    with pytest.raises(StreamIncompleteError):
        await collect(layer, request())

    assert len(store) == 0


async def test_content_filtered_reply_is_not_stored() -> None:
    backend = make_backend({"text": "partial", "finish_reason": "content_filter"})
    layer, store, _ = make_cache(backend)

    await collect(layer, request())

    assert len(store) == 0


async def test_length_limited_reply_is_stored() -> None:
    backend = make_backend({"text": "one two three four"})
    layer, store, _ = make_cache(backend)

    events = await collect(layer, request(params=SamplingParams(max_tokens=2)))
    replay = await collect(layer, request(params=SamplingParams(max_tokens=2)))

    assert len(store) == 1
    assert text_of(replay) == text_of(events) == "one two "
    finished = replay[-1]
    assert isinstance(finished, Finished)
    assert finished.reason == "length"


async def test_cancelled_stream_is_not_stored() -> None:
    backend = make_backend({"text": "one two three"})
    layer, store, _ = make_cache(backend)

    stream = layer.stream(request())
    assert isinstance(await anext(stream), TextDelta)
    await stream.aclose()

    assert len(store) == 0


async def test_bypass_skips_lookup_but_refreshes_entry() -> None:
    backend = make_backend({"text": "first"}, {"text": "second"})
    layer, _, metrics = make_cache(backend)

    await collect(layer, request())
    bypassed = await collect(layer, request(bypass_cache=True))
    replay = await collect(layer, request())

    assert text_of(bypassed) == "second"
    assert text_of(replay) == "second"
    assert len(backend.received) == 2
    assert metrics.value("parley_cache_lookups_total", model="m", result="bypass") == 1


async def test_entry_expires_after_ttl() -> None:
    backend = make_backend({"text": "first"}, {"text": "second"})
    clock = FakeClock()
    layer, _, _ = make_cache(backend, clock, ttl_seconds=60)

    await collect(layer, request())
    clock.advance(61)
    events = await collect(layer, request())

    assert text_of(events) == "second"
    assert len(backend.received) == 2


async def test_least_recent_entry_is_evicted() -> None:
    backend = make_backend()
    layer, store, _ = make_cache(backend, max_entries=2)

    for text in ("a", "b", "c"):
        await collect(layer, request(text))
    await collect(layer, request("a"))

    assert len(store) == 2
    assert [chat.messages[0].text_content for chat in backend.received] == ["a", "b", "c", "a"]


async def test_sampled_reply_cached_only_when_configured() -> None:
    hot = request(params=SamplingParams(temperature=0.8))
    for cache_sampled, expected_requests in ((False, 2), (True, 1)):
        backend = make_backend({"text": "sample"})
        layer, _, _ = make_cache(backend, cache_sampled=cache_sampled)

        await collect(layer, hot)
        await collect(layer, hot)

        assert len(backend.received) == expected_requests


def test_key_separates_omitted_from_default_params() -> None:
    omitted = request()
    explicit = request(params=SamplingParams(temperature=1.0))

    assert cache_key(omitted, "peer", "m-1") != cache_key(explicit, "peer", "m-1")


def test_key_covers_backend_model_and_images() -> None:
    base = request()
    image_a = ImagePart.from_bytes(b"\x89PNG-a", "image/png")
    image_b = ImagePart.from_bytes(b"\x89PNG-b", "image/png")
    with_a = ChatRequest(messages=(Message("user", (image_a,)),), model="m")
    with_b = ChatRequest(messages=(Message("user", (image_b,)),), model="m")

    assert cache_key(base, "peer", "m-1") != cache_key(base, "other", "m-1")
    assert cache_key(base, "peer", "m-1") != cache_key(base, "peer", "m-2")
    assert cache_key(with_a, "peer", "m-1") != cache_key(with_b, "peer", "m-1")
    assert cache_key(base, "peer", "m-1") == cache_key(request(user="someone"), "peer", "m-1")
