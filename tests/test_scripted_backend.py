"""The scripted backend: reply choice, chunking, usage, delays, failures and cancellation."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from backends.errors import ConfigError, ImageNotSupportedError, NotFoundError, OverloadedError, RateLimitedError
from backends.registry import BackendContext, create_backend, settings_class
from backends.scripted import ScriptedBackend, Settings, split_tokens
from backends.types import (
    ChatRequest,
    Event,
    Finished,
    ImagePart,
    Message,
    ReasoningDelta,
    SamplingParams,
    TextDelta,
    TextPart,
    Usage,
)


def make_backend(**fields: object) -> ScriptedBackend:
    settings = settings_class("scripted").model_validate({"name": "script", "kind": "scripted", **fields})
    backend = create_backend(settings, BackendContext())
    assert isinstance(backend, ScriptedBackend)
    return backend


def ask(text: str, model: str = "scripted-echo", **params: object) -> ChatRequest:
    return ChatRequest(
        messages=(Message.text("system", "be brief"), Message.text("user", text)),
        model=model,
        params=SamplingParams(**params),  # type: ignore[arg-type]
    )


async def collect(backend: ScriptedBackend, request: ChatRequest) -> list[Event]:
    return [event async for event in backend.stream(request)]


def text_of(events: list[Event]) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))


def test_split_tokens_round_trips_and_splits_chinese() -> None:
    assert split_tokens("Hello  big world ") == ["Hello  ", "big ", "world "]
    assert split_tokens("你好，世界") == ["你", "好", "，", "世", "界"]
    assert "".join(split_tokens(" lead and trail ")) == " lead and trail "
    assert split_tokens("") == []


async def test_no_replies_echoes_last_user_message() -> None:
    backend = make_backend()

    events = await collect(backend, ask("repeat after me"))

    assert text_of(events) == "repeat after me"
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["repeat ", "after ", "me"]
    assert events[-1] == Finished(reason="stop", backend="script", model="scripted-echo")
    assert backend.models()[0].name == "scripted-echo"


async def test_usage_counts_prompt_and_completion_chunks() -> None:
    backend = make_backend(replies=[{"text": "one two three", "reasoning": "think hard"}])

    events = await collect(backend, ask("a b c d"))

    usage = [e for e in events if isinstance(e, Usage)]
    assert usage == [Usage(prompt_tokens=6, completion_tokens=5, reasoning_tokens=2)]
    assert "".join(e.text for e in events if isinstance(e, ReasoningDelta)) == "think hard"
    assert isinstance(events[0], ReasoningDelta)


async def test_usage_override_and_report_usage_off() -> None:
    overridden = make_backend(replies=[{"text": "x", "prompt_tokens": 100, "completion_tokens": 7}])
    silent = make_backend(report_usage=False)

    overridden_events = await collect(overridden, ask("hi"))
    silent_events = await collect(silent, ask("hi"))

    assert Usage(prompt_tokens=100, completion_tokens=7) in overridden_events
    assert not any(isinstance(e, Usage) for e in silent_events)


async def test_rotation_cycles_in_order() -> None:
    backend = make_backend(replies=[{"text": "first"}, {"text": "second"}])

    replies = [text_of(await collect(backend, ask("q"))) for _ in range(3)]

    assert replies == ["first", "second", "first"]
    assert len(backend.received) == 3


async def test_without_cycle_the_last_reply_repeats() -> None:
    backend = make_backend(cycle=False, replies=[{"error": "overloaded"}, {"text": "ok"}])

    with pytest.raises(OverloadedError):
        await collect(backend, ask("q"))
    replies = [text_of(await collect(backend, ask("q"))) for _ in range(2)]

    assert replies == ["ok", "ok"]


async def test_match_picks_by_last_user_message() -> None:
    backend = make_backend(replies=[{"text": "weather reply", "match": "WEATHER"}, {"text": "default"}])

    matched = text_of(await collect(backend, ask("how is the weather today")))
    unmatched = text_of(await collect(backend, ask("tell me a joke")))

    assert matched == "weather reply"
    assert unmatched == "default"


async def test_error_before_first_chunk_carries_retry_after() -> None:
    backend = make_backend(replies=[{"error": "rate_limited", "retry_after": 2.5, "text": "never"}])

    with pytest.raises(RateLimitedError) as caught:
        await collect(backend, ask("q"))

    assert caught.value.retry_after == 2.5
    assert caught.value.backend == "script"
    assert caught.value.model == "scripted-echo"


async def test_error_after_chunks_keeps_the_partial_text() -> None:
    backend = make_backend(replies=[{"text": "a b c d", "error": "overloaded", "error_after_chunks": 2}])
    received: list[Event] = []

    with pytest.raises(OverloadedError):
        async for event in backend.stream(ask("q")):
            received.append(event)

    assert text_of(received) == "a b "


async def test_error_after_reply_end_fails_at_end() -> None:
    backend = make_backend(replies=[{"text": "a b", "error": "overloaded", "error_after_chunks": 10}])
    received: list[Event] = []

    with pytest.raises(OverloadedError):
        async for event in backend.stream(ask("q")):
            received.append(event)

    assert text_of(received) == "a b"
    assert not any(isinstance(e, Finished) for e in received)


async def test_max_tokens_cuts_reply_with_length_reason() -> None:
    backend = make_backend(replies=[{"text": "one two three four"}])

    events = await collect(backend, ask("q", max_tokens=2))

    assert text_of(events) == "one two "
    assert isinstance(events[-1], Finished)
    assert events[-1].reason == "length"


async def test_stop_sequence_cuts_reply() -> None:
    backend = make_backend(replies=[{"text": "alpha beta. gamma"}])

    events = await collect(backend, ask("q", stop=(".",)))

    assert text_of(events) == "alpha beta"


async def test_unknown_model_raises_not_found() -> None:
    backend = make_backend()

    with pytest.raises(NotFoundError) as caught:
        await collect(backend, ask("q", model="gpt-9"))

    assert "scripted-echo" in str(caught.value)


async def test_image_to_non_vision_model_is_rejected() -> None:
    backend = make_backend()
    image = ImagePart.from_bytes(b"\x89PNG fake", "image/png")
    request = ChatRequest(messages=(Message("user", (image,)),), model="scripted-echo")

    with pytest.raises(ImageNotSupportedError):
        await collect(backend, request)


async def test_image_counts_toward_prompt_tokens_on_vision_model() -> None:
    backend = make_backend(models=[{"name": "scripted-vision", "vision": True}], image_tokens=50)
    image = ImagePart.from_bytes(b"\x89PNG fake", "image/png")
    request = ChatRequest(messages=(Message("user", (image, TextPart("what"))),), model="scripted-vision")

    events = await collect(backend, request)

    assert Usage(prompt_tokens=51, completion_tokens=1) in events


async def test_cancel_during_first_token_delay_is_prompt() -> None:
    backend = make_backend(first_token_delay=3600)
    stream = backend.stream(ask("q"))
    task = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert backend.in_flight == 1

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await stream.aclose()

    assert backend.in_flight == 0


async def test_aclose_between_chunks_ends_the_stream() -> None:
    backend = make_backend(chunk_delay=0.001, replies=[{"text": "a b c d e f"}])
    stream = backend.stream(ask("q"))

    first = await stream.__anext__()
    await stream.aclose()

    assert first == TextDelta("a ")
    assert backend.in_flight == 0


def test_replies_file_is_read_as_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "replies.jsonl"
    lines = ["# comment", json.dumps({"text": "from file"}), "", json.dumps({"text": "x", "match": "y"})]
    path.write_text("\n".join(lines), encoding="utf-8")

    backend = make_backend(replies_file=str(path))

    assert backend.pick_reply(ask("nothing")).text == "from file"
    assert backend.pick_reply(ask("say y")).text == "x"


def test_bad_replies_file_line_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "replies.jsonl"
    path.write_text('{"text": "ok"}\n{"txt": "typo"}\n', encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        make_backend(replies_file=str(path))

    assert "line 2" in str(caught.value)


def test_missing_replies_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        make_backend(replies_file=str(tmp_path / "absent.jsonl"))

    assert "absent.jsonl" in str(caught.value)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ({"error": "no_such_code"}, "not a known error code"),
        ({"match": "(unclosed"}, "not a valid regular expression"),
        ({"error_after_chunks": -1}, "greater than or equal to 0"),
    ],
)
def test_invalid_reply_settings_are_rejected(reply: dict[str, object], expected: str) -> None:
    with pytest.raises(ValueError) as caught:
        Settings.model_validate({"name": "s", "replies": [reply]})

    assert expected in str(caught.value)


async def test_received_keeps_only_the_latest_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("backends.scripted.RECEIVED_LIMIT", 2)
    backend = make_backend()

    for text in ("one", "two", "three"):
        await collect(backend, ask(text))

    assert [request.messages[-1].text_content for request in backend.received] == ["two", "three"]
