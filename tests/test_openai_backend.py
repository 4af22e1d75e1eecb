"""Integration tests of the `openai` backend against the fake server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from backends.errors import (
    AuthError,
    BadRequestError,
    ConnectionFailedError,
    ContentFilteredError,
    ContextTooLongError,
    ImageNotSupportedError,
    InsufficientBalanceError,
    NotFoundError,
    OverloadedError,
    ParleyError,
    RateLimitedError,
    RetryableError,
    StreamIncompleteError,
    UpstreamTimeoutError,
)
from backends.openai_compat import OpenAIBackend, Settings, create
from backends.openai_errors import failure_from_object, parse_retry_after
from backends.pipeline import build_router
from backends.registry import BackendContext, create_backend, settings_class
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
from config import parse_config
from tests.fakes.openai_server import Behaviour, FakeOpenAIServer

API_KEY = "sk-test-secret-0123456789"
KEY_ENV = "PARLEY_TEST_KEY"


def make_backend(server: FakeOpenAIServer, *, env: dict[str, str] | None = None, **overrides: Any) -> OpenAIBackend:
    fields: dict[str, Any] = {
        "name": "fake",
        "kind": "openai",
        "base_url": server.base_url,
        "api_key_env": KEY_ENV,
        "models": [
            {"name": "chat", "upstream": "fake-model"},
            {"name": "reasoner", "reasoning": True, "ignored_params": ["temperature", "top_p"]},
            {"name": "vision", "vision": True},
            {"name": "plain", "streaming": False},
        ],
    }
    fields.update(overrides)
    return create(Settings.model_validate(fields), BackendContext(env={KEY_ENV: API_KEY} if env is None else env))


def ask(text: str = "hi", model: str = "chat", **params: Any) -> ChatRequest:
    return ChatRequest(messages=(Message.text("user", text),), model=model, params=SamplingParams(**params))


async def collect(backend: OpenAIBackend, request: ChatRequest) -> list[Event]:
    return [event async for event in backend.stream(request)]


async def collect_until_error(backend: OpenAIBackend, request: ChatRequest) -> tuple[list[Event], ParleyError]:
    events: list[Event] = []
    with pytest.raises(ParleyError) as caught:
        async for event in backend.stream(request):
            events.append(event)
    return events, caught.value


def text_of(events: list[Event]) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def backend(openai_server: FakeOpenAIServer) -> Any:
    created = make_backend(openai_server)
    yield created
    await created.aclose()


# Streaming


async def test_stream_yields_reasoning_text_usage_finished(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    openai_server.script(Behaviour(reply="Hello there", reasoning="Think first"))

    events = await collect(backend, ask())

    assert events == [
        ReasoningDelta("Think"),
        ReasoningDelta(" first"),
        TextDelta("Hello"),
        TextDelta(" there"),
        Usage(prompt_tokens=1, completion_tokens=4, reasoning_tokens=2, cached_tokens=0),
        Finished(reason="stop", backend="fake", model="chat"),
    ]


async def test_request_body_and_auth_header(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    await collect(backend, ask("question"))

    sent = openai_server.chat_requests[-1]
    assert sent.json == {
        "model": "fake-model",
        "messages": [{"role": "user", "content": "question"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.headers["accept"] == "text/event-stream"


async def test_keepalive_comments_are_ignored(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    openai_server.script(Behaviour(reply="still here", keepalive_comments=6))

    events = await collect(backend, ask())

    assert text_of(events) == "still here"
    assert events[-1] == Finished(reason="stop", backend="fake", model="chat")


async def test_split_utf8_characters_arrive_whole(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    reply = "你好，世界 — héllo 🙂"
    openai_server.script(Behaviour(reply=reply, reasoning="思考", split_utf8=True, split_delay=0.002))

    events = await collect(backend, ask())

    assert text_of(events) == reply
    assert [event.text for event in events if isinstance(event, ReasoningDelta)] == ["思", "考"]


async def test_usage_only_chunk_reports_all_counts(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    usage = {
        "prompt_tokens": 120,
        "completion_tokens": 40,
        "total_tokens": 160,
        "prompt_tokens_details": {"cached_tokens": 64},
        "completion_tokens_details": {"reasoning_tokens": 25},
    }
    openai_server.script(Behaviour(reply="ok", usage=usage))

    events = await collect(backend, ask())

    assert events[-2] == Usage(prompt_tokens=120, completion_tokens=40, reasoning_tokens=25, cached_tokens=64)


async def test_deepseek_cache_hit_tokens_count_as_cached(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    usage = {"prompt_tokens": 90, "completion_tokens": 10, "prompt_cache_hit_tokens": 80, "prompt_cache_miss_tokens": 10}
    openai_server.script(Behaviour(reply="ok", usage=usage))

    events = await collect(backend, ask())

    assert events[-2] == Usage(prompt_tokens=90, completion_tokens=10, reasoning_tokens=None, cached_tokens=80)


async def test_no_usage_requested_when_disabled(openai_server: FakeOpenAIServer) -> None:
    backend = make_backend(openai_server, include_usage=False)

    events = await collect(backend, ask())
    await backend.aclose()

    assert "stream_options" not in openai_server.chat_requests[-1].json
    assert not any(isinstance(event, Usage) for event in events)
    assert isinstance(events[-1], Finished)


async def test_finish_reason_length_is_reported(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    openai_server.script(Behaviour(reply="cut", finish_reason="length"))

    events = await collect(backend, ask())

    assert events[-1] == Finished(reason="length", backend="fake", model="chat")


async def test_insufficient_system_resource_raises(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    openai_server.script(Behaviour(reply="partial", finish_reason="insufficient_system_resource"))

    events, error = await collect_until_error(backend, ask())

    assert text_of(events) == "partial"
    assert isinstance(error, StreamIncompleteError)


async def test_error_mid_stream_keeps_partial_text(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    openai_server.script(Behaviour(reply="one two three four", error_mid_stream_after=2))

    events, error = await collect_until_error(backend, ask())

    assert text_of(events) == "one two"
    assert isinstance(error, OverloadedError)
    assert "inside the stream" in str(error)
    assert error.backend == "fake"
    assert error.model == "chat"


async def test_rate_limit_error_mid_stream_is_typed(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    body = {"error": {"message": "Rate limit reached for requests", "type": "requests", "code": "rate_limit_exceeded"}}
    openai_server.script(Behaviour(reply="a b c", error_mid_stream_after=1, error_body=body))

    events, error = await collect_until_error(backend, ask())

    assert text_of(events) == "a"
    assert isinstance(error, RateLimitedError)
    assert "Rate limit reached" in error.detail


async def test_missing_done_raises_stream_incomplete(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    openai_server.script(Behaviour(reply="almost done", omit_done=True))

    events, error = await collect_until_error(backend, ask())

    assert text_of(events) == "almost done"
    assert isinstance(error, StreamIncompleteError)
    assert "[DONE]" in error.detail
    assert not any(isinstance(event, Finished) for event in events)


async def test_missing_done_accepted_when_not_required(openai_server: FakeOpenAIServer) -> None:
    backend = make_backend(openai_server, require_done=False)
    openai_server.script(Behaviour(reply="fine", omit_done=True))

    events = await collect(backend, ask())
    await backend.aclose()

    assert text_of(events) == "fine"
    assert events[-1] == Finished(reason="stop", backend="fake", model="chat")


async def test_malformed_chunk_raises_stream_incomplete(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    openai_server.script(Behaviour(reply="good then bad", malformed_after=1))

    events, error = await collect_until_error(backend, ask())

    assert text_of(events) == "good"
    assert isinstance(error, StreamIncompleteError)
    assert "not a chat completion chunk" in error.detail


async def test_dropped_connection_raises_stream_incomplete(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    openai_server.script(Behaviour(reply="one two three", disconnect_after_chunks=2))

    events, error = await collect_until_error(backend, ask())

    assert text_of(events) == "one two"
    assert isinstance(error, StreamIncompleteError)
    assert openai_server.base_url in error.detail


async def test_connection_is_reused_between_replies(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    for _ in range(3):
        await collect(backend, ask())

    assert len(openai_server.chat_requests) == 3
    assert openai_server.connections == 1


# Non-streaming replies


async def test_json_reply_after_blank_lines(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    openai_server.script(Behaviour(reply="Whole reply.", reasoning="Because.", leading_blank_lines=4, chunk_delay=0.01))

    events = await collect(backend, ask(model="plain"))

    sent = openai_server.chat_requests[-1].json
    assert sent["stream"] is False
    assert "stream_options" not in sent
    assert events == [
        ReasoningDelta("Because."),
        TextDelta("Whole reply."),
        Usage(prompt_tokens=1, completion_tokens=3, reasoning_tokens=1, cached_tokens=0),
        Finished(reason="stop", backend="fake", model="plain"),
    ]


async def test_html_page_reply_points_at_base_url(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    openai_server.script(Behaviour(raw_body="<!doctype html><title>Welcome</title>"))

    _, error = await collect_until_error(backend, ask())

    assert isinstance(error, ConnectionFailedError)
    assert "not a chat completion" in error.detail
    assert "<!doctype html>" in error.detail
    assert "base_url" in error.fix


async def test_json_without_choices_raises(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    openai_server.script(Behaviour(raw_body='{"object": "list", "data": []}', raw_content_type="application/json"))

    _, error = await collect_until_error(backend, ask(model="plain"))

    assert isinstance(error, ConnectionFailedError)
    assert "not a chat completion" in error.detail


# HTTP statuses


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, BadRequestError),
        (422, BadRequestError),
        (401, AuthError),
        (403, AuthError),
        (402, InsufficientBalanceError),
        (404, NotFoundError),
        (408, UpstreamTimeoutError),
        (429, RateLimitedError),
        (500, OverloadedError),
        (502, RetryableError),
        (503, OverloadedError),
        (504, UpstreamTimeoutError),
    ],
)
async def test_status_maps_to_error(
    openai_server: FakeOpenAIServer, backend: OpenAIBackend, status: int, error_type: type[ParleyError]
) -> None:
    openai_server.script(Behaviour(status=status))

    events, error = await collect_until_error(backend, ask())

    assert events == []
    assert type(error) is error_type
    assert error.status == status
    assert error.backend == "fake"
    assert error.model == "chat"
    assert f"HTTP {status}" in str(error)
    assert f"fake server error {status}" in str(error)


async def test_auth_error_names_key_variable(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    openai_server.script(Behaviour(status=401))

    _, error = await collect_until_error(backend, ask())

    assert error.params["api_key_env"] == KEY_ENV
    assert KEY_ENV in error.fix
    assert API_KEY not in str(error)


async def test_wrong_key_rejected_by_server(openai_server: FakeOpenAIServer) -> None:
    openai_server.api_key = "sk-other"
    backend = make_backend(openai_server)

    _, error = await collect_until_error(backend, ask())
    await backend.aclose()

    assert isinstance(error, AuthError)
    assert error.status == 401


async def test_missing_key_warning_names_config_file(openai_server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture) -> None:
    raw = {"backends": [{"name": "x", "kind": "openai", "base_url": openai_server.base_url, "api_key_env": "NOPE_KEY_XYZ", "models": [{"name": "m"}]}]}
    config = parse_config(raw, source="/etc/parley/parley.toml", env={})

    with caplog.at_level(logging.WARNING, logger="backends.openai_compat"):
        router = build_router(config, BackendContext(env={}))
    await router.aclose()

    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "NOPE_KEY_XYZ" in message
    assert "backend x" in message
    assert "/etc/parley/parley.toml" in message


async def test_missing_key_fails_without_request(openai_server: FakeOpenAIServer) -> None:
    backend = make_backend(openai_server, env={})

    _, error = await collect_until_error(backend, ask())
    health = await backend.health()
    await backend.aclose()

    assert isinstance(error, AuthError)
    assert f"{KEY_ENV} is not set" in str(error)
    assert error.params["api_key_env"] == KEY_ENV
    assert openai_server.requests == []
    assert health.reachable is False
    assert KEY_ENV in health.detail


async def test_key_not_in_repr(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    assert API_KEY not in repr(backend)
    assert API_KEY not in repr(backend._client)
    assert API_KEY not in repr(backend._settings)


async def test_rate_limit_retry_after_seconds(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    openai_server.script(Behaviour(status=429, headers={"Retry-After": "2"}))

    _, error = await collect_until_error(backend, ask())

    assert isinstance(error, RateLimitedError)
    assert error.retry_after == 2.0


async def test_rate_limit_retry_after_ms(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    openai_server.script(Behaviour(status=429, headers={"retry-after-ms": "1500", "Retry-After": "9"}))

    _, error = await collect_until_error(backend, ask())

    assert error.retry_after == 1.5


async def test_rate_limit_retry_after_http_date(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    openai_server.script(Behaviour(status=429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}))

    _, error = await collect_until_error(backend, ask())

    # A date in the past means "now".
    assert error.retry_after == 0.0


async def test_rate_limit_garbage_retry_after_ignored(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    openai_server.script(Behaviour(status=429, headers={"Retry-After": "soon"}))

    _, error = await collect_until_error(backend, ask())

    assert isinstance(error, RateLimitedError)
    assert error.retry_after is None


async def test_quota_429_is_insufficient_balance(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    body = {"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "code": "insufficient_quota"}}
    openai_server.script(Behaviour(status=429, error_body=body))

    _, error = await collect_until_error(backend, ask())

    assert isinstance(error, InsufficientBalanceError)


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"message": "This model's maximum context length is 65536 tokens. However, you requested 70000 tokens.", "type": "invalid_request_error"}},
        {"error": {"message": "too long", "code": "context_length_exceeded"}},
        {"error": {"message": "the request exceeds the available context size, try increasing it", "type": "exceed_context_size_error"}},
    ],
)
async def test_context_length_400_is_context_too_long(
    openai_server: FakeOpenAIServer, backend: OpenAIBackend, body: dict[str, Any]
) -> None:
    openai_server.script(Behaviour(status=400, error_body=body))

    _, error = await collect_until_error(backend, ask())

    assert isinstance(error, ContextTooLongError)
    assert error.status == 400


async def test_content_risk_400_is_content_filtered(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    openai_server.script(Behaviour(status=400, error_body={"error": {"message": "Content Exists Risk", "type": "invalid_request_error"}}))

    _, error = await collect_until_error(backend, ask())

    assert isinstance(error, ContentFilteredError)


async def test_proxy_html_error_page_is_summarized(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    openai_server.script(Behaviour(status=502, error_body="<html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>"))

    _, error = await collect_until_error(backend, ask())

    assert type(error) is RetryableError
    assert error.code == "upstream_unavailable"
    assert error.retryable
    assert error.detail.endswith(": an HTML error page: 502 Bad Gateway")
    assert "<" not in str(error)


async def test_html_error_page_title_is_preferred(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    page = "<!DOCTYPE html>\n<html><head><title>503 Service &amp; Temporarily Unavailable</title></head><body><h1>Oops</h1></body></html>"
    openai_server.script(Behaviour(status=503, error_body=page))

    _, error = await collect_until_error(backend, ask())

    assert isinstance(error, OverloadedError)
    assert error.detail.endswith(": an HTML error page: 503 Service & Temporarily Unavailable")


async def test_html_error_page_without_heading(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    openai_server.script(Behaviour(status=500, error_body="<html><body><div>" + "x" * 2000 + "</div></body></html>"))

    _, error = await collect_until_error(backend, ask())

    assert error.detail.endswith(": an HTML error page")


async def test_long_error_message_is_shortened(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    openai_server.script(Behaviour(status=400, error_body={"error": {"message": "x" * 5000}}))

    _, error = await collect_until_error(backend, ask())

    assert isinstance(error, BadRequestError)
    assert len(error.detail) < 500


# What is sent upstream


async def test_assistant_turns_send_text_only(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    openai_server.script(Behaviour(reply="first", reasoning="hidden thoughts"), Behaviour(reply="second"))
    first = await collect(backend, ask("q1", model="reasoner"))
    history = (
        Message.text("system", "Be brief."),
        Message.text("user", "q1"),
        Message.text("assistant", text_of(first)),
        Message.text("user", "q2"),
    )

    await collect(backend, ChatRequest(messages=history, model="reasoner"))

    sent = openai_server.chat_requests[-1].json["messages"]
    assert sent == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "first"},
        {"role": "user", "content": "q2"},
    ]
    assert "hidden thoughts" not in openai_server.chat_requests[-1].body.decode()
    assert all("reasoning_content" not in message for message in sent)


async def test_image_sent_as_data_url(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    image = ImagePart.from_bytes(b"\x89PNG\r\n\x1a\nfake-pixels", "image/png")
    message = Message(role="user", parts=(TextPart("What is this?"), image))

    await collect(backend, ChatRequest(messages=(message,), model="vision"))

    content = openai_server.chat_requests[-1].json["messages"][0]["content"]
    assert content[0] == {"type": "text", "text": "What is this?"}
    assert content[1]["type"] == "image_url"
    url = content[1]["image_url"]["url"]
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    assert base64.b64decode(url[len(prefix) :]) == image.data


async def test_image_to_text_model_rejected_before_sending(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    image = ImagePart.from_bytes(b"GIF89a", "image/gif")
    request = ChatRequest(messages=(Message(role="user", parts=(image,)),), model="chat")

    _, error = await collect_until_error(backend, request)

    assert isinstance(error, ImageNotSupportedError)
    assert "chat" in error.detail
    assert openai_server.requests == []


async def test_image_rejected_by_server_is_typed(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    body = {"error": {"message": "unknown variant `image_url`, expected `text`", "type": "invalid_request_error"}}
    openai_server.script(Behaviour(status=400, error_body=body))
    image = ImagePart.from_bytes(b"GIF89a", "image/gif")
    request = ChatRequest(messages=(Message(role="user", parts=(TextPart("see"), image)),), model="vision")

    _, error = await collect_until_error(backend, request)

    assert isinstance(error, ImageNotSupportedError)


async def test_ignored_params_not_sent(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    await collect(backend, ask(model="reasoner", temperature=0.7, top_p=0.9, max_tokens=64, seed=7))

    sent = openai_server.chat_requests[-1].json
    assert "temperature" not in sent
    assert "top_p" not in sent
    assert sent["max_tokens"] == 64
    assert sent["seed"] == 7


async def test_only_set_params_are_sent(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    await collect(backend, ask(temperature=0.0, stop=("END",)))

    sent = openai_server.chat_requests[-1].json
    assert sent["temperature"] == 0.0
    assert sent["stop"] == ["END"]
    for name in ("top_p", "max_tokens", "presence_penalty", "frequency_penalty", "seed"):
        assert name not in sent


async def test_max_completion_tokens_field(openai_server: FakeOpenAIServer) -> None:
    backend = make_backend(openai_server, max_tokens_field="max_completion_tokens")

    await collect(backend, ask(max_tokens=32))
    await backend.aclose()

    sent = openai_server.chat_requests[-1].json
    assert sent["max_completion_tokens"] == 32
    assert "max_tokens" not in sent


async def test_extra_body_and_headers_sent(openai_server: FakeOpenAIServer) -> None:
    backend = make_backend(openai_server, extra_body={"enable_thinking": False}, headers={"X-Team": "demo"})

    await collect(backend, ask(temperature=0.3))
    await backend.aclose()

    sent = openai_server.chat_requests[-1]
    assert sent.json["enable_thinking"] is False
    assert sent.json["temperature"] == 0.3
    assert sent.headers["x-team"] == "demo"


async def test_unknown_model_raises_not_found(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    _, error = await collect_until_error(backend, ask(model="nope"))

    assert isinstance(error, NotFoundError)
    assert "chat" in error.fix
    assert openai_server.requests == []


# Cancellation and timeouts


async def test_stopping_iteration_closes_upstream(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    openai_server.script(Behaviour(reply="one two three four five six", chunk_delay=0.2))
    stream = backend.stream(ask())

    first = await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]

    assert first == TextDelta("one")
    await openai_server.wait_until(lambda: openai_server.disconnects == 1)
    assert openai_server.in_flight == 0


async def test_cancelled_task_closes_upstream(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    openai_server.script(Behaviour(reply="slow reply", hang_after_headers=30))
    received: list[Event] = []

    async def consume() -> None:
        async for event in backend.stream(ask()):
            received.append(event)

    task = asyncio.create_task(consume())
    await openai_server.wait_until(lambda: openai_server.in_flight == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    await openai_server.wait_until(lambda: openai_server.disconnects == 1)
    assert received == []


async def test_keepalives_do_not_count_as_first_token(openai_server: FakeOpenAIServer) -> None:
    backend = make_backend(openai_server, timeouts={"first_token": 0.3})
    openai_server.script(Behaviour(keepalive_comments=200, keepalive_interval=0.02))

    _, error = await collect_until_error(backend, ask())
    await backend.aclose()

    assert isinstance(error, UpstreamTimeoutError)
    assert "no first token within 0.3 s" in error.detail
    await openai_server.wait_until(lambda: openai_server.disconnects == 1)


async def test_silent_server_hits_first_token_timeout(openai_server: FakeOpenAIServer) -> None:
    backend = make_backend(openai_server, timeouts={"first_token": 0.2})
    openai_server.script(Behaviour(hang_before_first_byte=30))

    _, error = await collect_until_error(backend, ask())
    await backend.aclose()

    assert isinstance(error, UpstreamTimeoutError)
    assert "first token" in error.detail


async def test_chunk_gap_timeout_keeps_partial_text(openai_server: FakeOpenAIServer) -> None:
    backend = make_backend(openai_server, timeouts={"chunk_gap": 0.3})
    openai_server.script(Behaviour(reply="one two", chunk_delay=5))

    events, error = await collect_until_error(backend, ask())
    await backend.aclose()

    assert text_of(events) == "one"
    assert isinstance(error, UpstreamTimeoutError)
    assert "no new chunk for 0.3 s" in error.detail


async def test_total_timeout_ends_slow_reply(openai_server: FakeOpenAIServer) -> None:
    backend = make_backend(openai_server, timeouts={"total": 0.5, "chunk_gap": 10})
    openai_server.script(Behaviour(reply="a b c d e f g h i j k l m n o p", chunk_delay=0.1))

    events, error = await collect_until_error(backend, ask())
    await backend.aclose()

    assert isinstance(error, UpstreamTimeoutError)
    assert "total timeout of 0.5 s" in error.detail
    assert 0 < len(text_of(events)) < len("a b c d e f g h i j k l m n o p")


async def test_connection_refused_names_url() -> None:
    port = free_port()
    settings = Settings.model_validate({"name": "gone", "base_url": f"http://127.0.0.1:{port}/v1", "models": [{"name": "m"}]})
    backend = create(settings, BackendContext())

    with pytest.raises(ConnectionFailedError) as caught:
        await collect(backend, ChatRequest(messages=(Message.text("user", "hi"),), model="m"))
    health = await backend.health()
    await backend.aclose()

    assert f"http://127.0.0.1:{port}/v1" in str(caught.value)
    assert caught.value.backend == "gone"
    assert caught.value.model == "m"
    assert health.reachable is False


# Health


async def test_health_reachable(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    health = await backend.health()

    assert health.reachable is True
    assert health.backend == "fake"
    assert openai_server.requests[-1].path == "/v1/models"
    assert openai_server.requests[-1].headers["authorization"] == f"Bearer {API_KEY}"


async def test_health_auth_failure_names_variable(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    openai_server.models_behaviour = Behaviour(status=401)

    health = await backend.health()

    assert health.reachable is False
    assert KEY_ENV in health.detail


async def test_health_times_out(openai_server: FakeOpenAIServer) -> None:
    backend = make_backend(openai_server, health_timeout=0.2)
    openai_server.models_behaviour = Behaviour(hang_before_first_byte=30)

    health = await backend.health()
    await backend.aclose()

    assert health.reachable is False
    assert "timed out after 0.2 s" in health.detail


# Settings


def test_registry_builds_openai_backend() -> None:
    settings_type = settings_class("openai")
    settings = settings_type.model_validate({"name": "x", "kind": "openai", "base_url": "http://127.0.0.1:1/v1/", "models": [{"name": "m"}]})

    backend = create_backend(settings, BackendContext())

    assert isinstance(backend, OpenAIBackend)
    assert [info.name for info in backend.models()] == ["m"]
    assert backend._models_url == "http://127.0.0.1:1/v1/models"


def test_thread_server_serves_sync_callers(openai_server_thread: FakeOpenAIServer) -> None:
    openai_server_thread.script(Behaviour(reply="from a thread"))

    async def run() -> list[Event]:
        backend = make_backend(openai_server_thread)
        try:
            return await collect(backend, ask("sync"))
        finally:
            await backend.aclose()

    events = asyncio.run(run())

    assert text_of(events) == "from a thread"
    assert openai_server_thread.chat_requests[-1].json["messages"] == [{"role": "user", "content": "sync"}]


async def test_models_report_capabilities(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    infos = {info.name: info for info in backend.models()}

    assert infos["chat"].upstream == "fake-model"
    assert infos["reasoner"].capabilities.reasoning is True
    assert infos["reasoner"].capabilities.ignored_params == frozenset({"temperature", "top_p"})
    assert infos["vision"].capabilities.vision is True
    assert infos["plain"].capabilities.streaming is False
    assert infos["chat"].capabilities.streaming is True


@pytest.mark.parametrize("header", ["Authorization", "api-key", "X-Api-Key"])
def test_credential_headers_rejected(header: str) -> None:
    with pytest.raises(ValidationError, match="api_key_env"):
        Settings(name="x", base_url="https://api.example.test/v1", headers={header: "secret"})


@pytest.mark.parametrize("url", ["api.deepseek.com/v1", "ftp://host/v1", "http://", "not a url"])
def test_invalid_base_url_rejected(url: str) -> None:
    with pytest.raises(ValidationError, match="base_url"):
        Settings(name="x", base_url=url)


def test_invalid_key_variable_name_rejected() -> None:
    with pytest.raises(ValidationError):
        Settings(name="x", base_url="https://api.example.test/v1", api_key_env="sk-123 secret")


async def test_slow_consumer_time_is_not_a_chunk_gap(openai_server: FakeOpenAIServer) -> None:
    # Chunks come 1.5 s apart; the consumer spends 1.0 s on each, so the
    # backend itself waits only about 0.5 s for each chunk, within the 1.0 s gap.
    backend = make_backend(openai_server, timeouts={"chunk_gap": 1.0})
    openai_server.script(Behaviour(reply="one two three", chunk_delay=1.5))
    events: list[Event] = []

    async for event in backend.stream(ask()):
        events.append(event)
        await asyncio.sleep(1.0)
    await backend.aclose()

    assert text_of(events) == "one two three"
    assert isinstance(events[-1], Finished)


async def test_redirect_names_new_url(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    openai_server.script(Behaviour(status=301, headers={"Location": "https://api.example.test/v2/chat/completions"}))

    _, error = await collect_until_error(backend, ask())

    assert isinstance(error, BadRequestError)
    assert "https://api.example.test/v2/chat/completions" in error.detail
    assert "base_url" in error.fix


async def test_padded_done_marker_ends_stream(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    openai_server.script(Behaviour(reply="done soon", done_line="data:  [DONE]  "))

    events = await collect(backend, ask())

    assert text_of(events) == "done soon"
    assert events[-1] == Finished(reason="stop", backend="fake", model="chat")


async def test_gzip_stream_is_decoded(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    openai_server.script(Behaviour(reply="compressed 你好 reply", reasoning="hmm", gzip=True, keepalive_comments=2))

    events = await collect(backend, ask())

    assert text_of(events) == "compressed 你好 reply"
    assert events[0] == ReasoningDelta("hmm")
    assert events[-1] == Finished(reason="stop", backend="fake", model="chat")


async def test_error_event_type_mid_stream(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    body = {"error": {"message": "Overloaded", "type": "overloaded_error"}}
    openai_server.script(Behaviour(reply="a b c", error_mid_stream_after=2, error_event=True, error_body=body))

    events, error = await collect_until_error(backend, ask())

    assert text_of(events) == "a b"
    assert isinstance(error, OverloadedError)
    assert "Overloaded" in error.detail


async def test_error_object_in_json_reply(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    body = '{"error": {"message": "Insufficient Balance", "type": "unknown_error", "code": "insufficient_balance"}}'
    openai_server.script(Behaviour(raw_body=body, raw_content_type="application/json"))

    _, error = await collect_until_error(backend, ask(model="plain"))

    assert isinstance(error, InsufficientBalanceError)
    assert "Insufficient Balance" in error.detail


async def test_huge_error_body_is_read_in_part(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    openai_server.script(Behaviour(status=500, error_body="E" * 2_000_000))

    _, error = await collect_until_error(backend, ask())

    assert isinstance(error, OverloadedError)
    assert len(str(error)) < 1000


async def test_many_keepalives_then_reply(openai_server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    openai_server.script(Behaviour(reply="after the wait", keepalive_comments=500))

    events = await collect(backend, ask())

    assert text_of(events) == "after the wait"


# Error mapping without a server


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "0.25"}, 0.25),
        ({"retry-after": "-5"}, 0.0),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "junk", "retry-after": "4"}, 4.0),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(httpx.Headers(headers)) == expected


def test_parse_retry_after_future_date() -> None:
    when = datetime.now(timezone.utc) + timedelta(seconds=120)

    seconds = parse_retry_after(httpx.Headers({"retry-after": format_datetime(when, usegmt=True)}))

    assert seconds is not None
    assert 100 < seconds <= 120


@pytest.mark.parametrize(
    ("error", "status"),
    [
        ({"message": "busy", "code": 503}, 503),
        ({"message": "slow down", "status": 429}, 429),
        ({"message": "limit", "code": "rate_limit_exceeded"}, 429),
        ({"message": "pay", "code": "insufficient_quota"}, 402),
        ({"message": "key", "type": "authentication_error"}, 401),
        ({"message": "long", "code": "context_length_exceeded"}, 400),
        ({"message": "boom", "type": "server_error"}, 500),
        ("plain text error", 500),
        (["not", "an", "object"], 500),
    ],
)
def test_failure_from_object_status(error: Any, status: int) -> None:
    assert failure_from_object(error).status == status


async def test_upstream_cookies_not_sent_back(openai_server: FakeOpenAIServer) -> None:
    backend = make_backend(openai_server)
    openai_server.script(Behaviour(headers={"Set-Cookie": "session=user-one; Path=/"}), Behaviour())

    await collect(backend, ask())
    await collect(backend, ask())
    await backend.aclose()

    first, second = openai_server.chat_requests
    assert "cookie" not in first.headers
    assert "cookie" not in second.headers


class _SlowCloseStream(httpx.AsyncByteStream):
    """An SSE body that sends one chunk, then waits; closing it waits for `release`."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.closed = False

    async def __aiter__(self) -> Any:
        yield b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'
        await asyncio.Event().wait()

    async def aclose(self) -> None:
        await self.release.wait()
        self.closed = True


async def test_cancel_during_close_still_closes_upstream() -> None:
    # A client that leaves cancels its request, and the cancel can land while the
    # stream is closing its response; the close must still finish.
    body = _SlowCloseStream()

    async def reply(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=body)

    settings = Settings.model_validate({"name": "mock", "kind": "openai", "base_url": "http://127.0.0.1:9/v1", "models": [{"name": "chat"}]})
    backend = create(settings, BackendContext(env={}, http_transport=httpx.MockTransport(reply)))
    events = backend.stream(ask())
    assert isinstance(await anext(events), TextDelta)

    closing = asyncio.create_task(events.aclose())
    await asyncio.sleep(0.01)
    closing.cancel()
    await asyncio.gather(closing, return_exceptions=True)
    body.release.set()
    await asyncio.sleep(0.01)
    await backend.aclose()

    assert body.closed
