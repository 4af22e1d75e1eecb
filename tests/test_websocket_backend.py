"""The websocket backend and the shared protocol module, against a real websockets server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import AsyncIterator

import pytest

from backends import ws_protocol
from backends.errors import (
    AuthError,
    BadRequestError,
    ConnectionFailedError,
    ContextTooLongError,
    InvalidInputError,
    OverloadedError,
    RateLimitedError,
    RetryableError,
    StreamIncompleteError,
    UpstreamTimeoutError,
)
from backends.registry import BackendContext, create_backend, settings_class
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
    TextPart,
    Usage,
)
from backends.websocket import WebSocketBackend
from tests.fakes.ws_server import FakeWsServer, WsBehaviour
from tests.gateway_setup import SCRIPTED_BACKEND, SLOW_BACKEND, Gateway, gateway_config, run_gateway

PNG_BYTES = b"\x89PNG\r\n\x1a\n fake image bytes"


@pytest.fixture
async def ws_server() -> AsyncIterator[FakeWsServer]:
    async with FakeWsServer() as server:
        yield server


def make_backend(url: str, env: dict[str, str] | None = None, **fields: object) -> WebSocketBackend:
    config = {
        "name": "remote",
        "kind": "websocket",
        "url": url,
        "models": [{"name": "remote-chat", "upstream": "fake", "vision": True}],
        **fields,
    }
    backend = create_backend(settings_class("websocket").model_validate(config), BackendContext(env=env or {}))
    assert isinstance(backend, WebSocketBackend)
    return backend


@pytest.fixture
async def backend(ws_server: FakeWsServer) -> AsyncIterator[WebSocketBackend]:
    created = make_backend(ws_server.url)
    yield created
    await created.aclose()


def ask(text: str = "hello") -> ChatRequest:
    return ChatRequest(messages=(Message.text("user", text),), model="remote-chat", params=SamplingParams(temperature=0.3))


async def collect(backend: WebSocketBackend, request: ChatRequest) -> list[Event]:
    return [event async for event in backend.stream(request)]


def text_of(events: list[Event]) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))


async def wait_for(condition: object, timeout: float = 10.0) -> None:
    """Poll a condition until it holds; the bound is for liveness, not speed."""
    async with asyncio.timeout(timeout):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.01)


# Protocol mappings.


def test_request_round_trips_through_the_message() -> None:
    image = ImagePart.from_bytes(PNG_BYTES, "image/png")
    request = ChatRequest(
        messages=(Message.text("system", "be brief"), Message("user", (TextPart("what is it?"), image))),
        model="public-name",
        params=SamplingParams(temperature=0.5, max_tokens=20, stop=("END",), seed=7),
        bypass_cache=True,
        language="zh-CN",
    )

    message = ws_protocol.request_to_message(request, "r1", model="upstream-id")
    parsed = ws_protocol.parse_client_message(ws_protocol.encode(message))
    assert isinstance(parsed, ws_protocol.RequestMessage)
    back = ws_protocol.message_to_request(parsed, user="alice")

    assert parsed.model == "upstream-id"
    assert back.messages == request.messages
    assert back.params == request.params
    assert back.bypass_cache is True
    assert back.language == "zh-CN"
    assert back.user == "alice"


def test_plain_string_content_and_single_stop_are_accepted() -> None:
    raw = '{"type":"request","id":"a","model":"m","messages":[{"role":"user","content":"hi"}],"stop":"."}'

    parsed = ws_protocol.parse_client_message(raw)
    assert isinstance(parsed, ws_protocol.RequestMessage)
    request = ws_protocol.message_to_request(parsed)

    assert request.messages == (Message.text("user", "hi"),)
    assert request.params.stop == (".",)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("not json", "not valid JSON"),
        ('{"type":"launch"}', "invalid 'launch' message"),
        ('{"type":"request","id":"a","model":"m","messages":[]}', "messages"),
        ('{"type":"request","id":"a","model":"m","messages":[{"role":"tool","content":"x"}]}', "role"),
        ('{"type":"request","id":"a","model":"m","messages":[{"role":"user","content":"x"}],"temperature":9}', "temperature"),
        ('{"type":"cancel","id":""}', "id"),
        ("[1, 2]", "untyped"),
        pytest.param("[" * 100_000 + "]" * 100_000, "not valid JSON", id="deep-nesting"),
        pytest.param(b"\xff\xfe", "not valid JSON", id="not-utf8"),
    ],
)
def test_invalid_client_messages_raise_bad_request(raw: str | bytes, expected: str) -> None:
    with pytest.raises(BadRequestError) as caught:
        ws_protocol.parse_client_message(raw)

    assert expected in str(caught.value)


def test_bad_request_keeps_a_usable_request_id() -> None:
    raw = '{"type":"request","id":"r9","model":"m","messages":[]}'

    with pytest.raises(BadRequestError) as caught:
        ws_protocol.parse_client_message(raw)

    assert caught.value.params["request_id"] == "r9"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.invalid/cat.png", "not a base64 data URL"),
        ("data:image/png,rawbytes", "not a base64 data URL"),
        ("data:text/html;base64,PGI+", "image type 'text/html' is not supported"),
        ("data:image/png;base64,***", "not valid base64"),
    ],
)
def test_bad_image_urls_raise_invalid_input(url: str, expected: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        ws_protocol.decode_data_url(url)

    assert expected in str(caught.value)


def test_every_event_round_trips() -> None:
    events: list[Event] = [
        TextDelta("你好"),
        ReasoningDelta("hmm"),
        Usage(prompt_tokens=3, completion_tokens=4, reasoning_tokens=1, cached_tokens=2),
        Notice(kind="retrying", message="retry 1 of 3"),
        Finished(reason="length", backend="b", model="m", cached=True, failures=("x: 503 ×3",)),
    ]

    for event in events:
        raw = ws_protocol.encode(ws_protocol.event_to_message(event, "id1"))
        message = ws_protocol.parse_server_message(raw)
        assert not isinstance(message, ws_protocol.ErrorMessage)
        assert ws_protocol.message_to_event(message) == event


def test_error_round_trips_to_its_class() -> None:
    error = ContextTooLongError("the prompt has 9000 tokens", backend="b", model="m", prompt_tokens=9000, secret=object())

    message = ws_protocol.error_to_message(error, "id1")
    parsed = ws_protocol.parse_server_message(ws_protocol.encode(message))
    assert isinstance(parsed, ws_protocol.ErrorMessage)
    back = ws_protocol.message_to_error(parsed, backend="client", model="chat")

    assert isinstance(back, ContextTooLongError)
    assert parsed.message == "b/m: the prompt has 9000 tokens"
    assert parsed.retryable is False
    assert back.params == {"prompt_tokens": 9000}
    assert back.fix == ContextTooLongError.fix
    assert back.backend == "client"


def test_interrupted_done_carries_its_error() -> None:
    finished = Finished(reason="error", backend="b", model="m", failures=("m: overloaded",))
    error = OverloadedError("the model is busy", backend="b", model="m")

    raw = ws_protocol.encode(ws_protocol.event_to_message(finished, "id1", error=error))
    parsed = ws_protocol.parse_server_message(raw)

    assert isinstance(parsed, ws_protocol.DoneMessage)
    assert parsed.error is not None
    assert parsed.error.code == "overloaded"
    assert parsed.error.retryable is True
    assert isinstance(ws_protocol.message_to_error(parsed.error), OverloadedError)
    assert ws_protocol.message_to_event(parsed) == finished


def test_unknown_retryable_code_stays_retryable() -> None:
    message = ws_protocol.ErrorMessage(type="error", id="a", code="brand_new", message="x", retryable=True)

    error = ws_protocol.message_to_error(message)

    assert isinstance(error, RetryableError)


def test_invalid_server_message_is_retryable() -> None:
    with pytest.raises(RetryableError):
        ws_protocol.parse_server_message('{"type":"delta"}')


# The backend against the fake server.


async def test_reply_streams_with_usage_and_finish(backend: WebSocketBackend, ws_server: FakeWsServer) -> None:
    ws_server.default = WsBehaviour(reply="one two three", usage={"prompt_tokens": 5, "completion_tokens": 3})

    events = await collect(backend, ask())

    assert [e.text for e in events if isinstance(e, TextDelta)] == ["one ", "two ", "three"]
    assert Usage(prompt_tokens=5, completion_tokens=3) in events
    assert events[-1] == Finished(reason="stop", backend="remote", model="remote-chat")
    assert ws_server.requests[0].model == "fake"
    assert ws_server.requests[0].temperature == 0.3


async def test_reasoning_and_notices_arrive_before_text(backend: WebSocketBackend, ws_server: FakeWsServer) -> None:
    ws_server.default = WsBehaviour(reply="answer", reasoning="let me think", notices=(("retrying", "retry 1"),))

    events = await collect(backend, ask())

    assert events[0] == Notice(kind="retrying", message="retry 1")
    assert "".join(e.text for e in events if isinstance(e, ReasoningDelta)) == "let me think"
    first_text = next(i for i, e in enumerate(events) if isinstance(e, TextDelta))
    last_reasoning = max(i for i, e in enumerate(events) if isinstance(e, ReasoningDelta))
    assert last_reasoning < first_text


async def test_image_is_sent_as_data_url(backend: WebSocketBackend, ws_server: FakeWsServer) -> None:
    image = ImagePart.from_bytes(PNG_BYTES, "image/png")
    request = ChatRequest(messages=(Message("user", (TextPart("look"), image)),), model="remote-chat")

    await collect(backend, request)

    content = ws_server.requests[0].messages[0].content
    assert isinstance(content, list)
    image_part = content[1]
    assert isinstance(image_part, ws_protocol.ImageContentPart)
    assert image_part.image_url.url == "data:image/png;base64," + base64.b64encode(PNG_BYTES).decode()


@pytest.mark.parametrize(
    ("code", "error_class"),
    [("rate_limited", RateLimitedError), ("overloaded", OverloadedError), ("context_too_long", ContextTooLongError)],
)
async def test_error_message_raises_typed_error(
    backend: WebSocketBackend, ws_server: FakeWsServer, code: str, error_class: type[Exception]
) -> None:
    ws_server.default = WsBehaviour(error_code=code)

    with pytest.raises(error_class) as caught:
        await collect(backend, ask())

    assert "scripted failure" in str(caught.value)
    assert "remote/remote-chat" in str(caught.value)


async def test_error_mid_stream_keeps_partial_text(backend: WebSocketBackend, ws_server: FakeWsServer) -> None:
    ws_server.default = WsBehaviour(reply="a b c d", error_code="overloaded", error_after_chunks=2)
    received: list[Event] = []

    with pytest.raises(OverloadedError):
        async for event in backend.stream(ask()):
            received.append(event)

    assert text_of(received) == "a b "


async def test_done_with_reason_error_raises_incomplete(backend: WebSocketBackend, ws_server: FakeWsServer) -> None:
    # A server older than the `error` field of `done`: the failure is still raised, not yielded.
    ws_server.default = WsBehaviour(reply="a b", finish_reason="error")
    received: list[Event] = []

    with pytest.raises(StreamIncompleteError) as caught:
        async for event in backend.stream(ask()):
            received.append(event)

    assert text_of(received) == "a b"
    assert not any(isinstance(event, Finished) for event in received)
    assert "interrupted" in str(caught.value)


async def test_aclose_sends_cancel_and_server_stops(backend: WebSocketBackend, ws_server: FakeWsServer) -> None:
    ws_server.default = WsBehaviour(reply="word " * 200, chunk_delay=0.05)
    stream = backend.stream(ask())

    first = await stream.__anext__()
    await stream.aclose()
    await wait_for(lambda: ws_server.in_flight == 0)

    assert first == TextDelta("word ")
    assert len(ws_server.cancels) == 1
    assert ws_server.cancels[0] == ws_server.requests[0].id


async def test_task_cancel_sends_cancel(backend: WebSocketBackend, ws_server: FakeWsServer) -> None:
    ws_server.default = WsBehaviour(hang_before_first=3600)

    task = asyncio.create_task(collect(backend, ask()))
    await wait_for(lambda: ws_server.in_flight == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_for(lambda: ws_server.in_flight == 0)

    assert ws_server.cancels == [ws_server.requests[0].id]


async def test_connection_is_reused_after_cancel(backend: WebSocketBackend, ws_server: FakeWsServer) -> None:
    ws_server.script(WsBehaviour(reply="x " * 100, chunk_delay=0.05), WsBehaviour(reply="second"))
    stream = backend.stream(ask())
    await stream.__anext__()
    await stream.aclose()

    events = await collect(backend, ask())

    assert text_of(events) == "second"
    assert ws_server.connections == 1


async def test_two_concurrent_requests_share_one_connection(backend: WebSocketBackend, ws_server: FakeWsServer) -> None:
    ws_server.script(WsBehaviour(reply="alpha beta gamma", chunk_delay=0.02), WsBehaviour(reply="uno dos tres", chunk_delay=0.02))

    first, second = await asyncio.gather(collect(backend, ask("a")), collect(backend, ask("b")))

    assert text_of(first) == "alpha beta gamma"
    assert text_of(second) == "uno dos tres"
    assert ws_server.connections == 1
    assert ws_server.max_in_flight == 2
    assert ws_server.requests[0].id != ws_server.requests[1].id


async def test_auth_token_is_sent_first() -> None:
    async with FakeWsServer(token="s3cret") as server:
        backend = make_backend(server.url, env={"PARLEY_WS_KEY": "s3cret"}, api_key_env="PARLEY_WS_KEY")

        events = await collect(backend, ask())
        await backend.aclose()

    assert isinstance(server.received[0], ws_protocol.AuthMessage)
    assert text_of(events) == WsBehaviour().reply


async def test_wrong_token_raises_auth_error() -> None:
    async with FakeWsServer(token="s3cret") as server:
        backend = make_backend(server.url, env={"PARLEY_WS_KEY": "k-7f3a-not-the-key"}, api_key_env="PARLEY_WS_KEY")

        with pytest.raises(AuthError) as caught:
            await collect(backend, ask())
        await backend.aclose()

    assert "k-7f3a-not-the-key" not in str(caught.value)
    assert caught.value.code == "auth_failed"
    assert server.requests == []


async def test_missing_key_names_the_variable(ws_server: FakeWsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PARLEY_WS_ABSENT_KEY", raising=False)
    backend = make_backend(ws_server.url, api_key_env="PARLEY_WS_ABSENT_KEY")

    with pytest.raises(AuthError) as caught:
        await collect(backend, ask())

    assert "PARLEY_WS_ABSENT_KEY is not set" in str(caught.value)
    assert ws_server.connections == 0


async def test_connection_refused_raises_connection_failed() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = make_backend(f"ws://127.0.0.1:{port}/ws/chat")

    with pytest.raises(ConnectionFailedError) as caught:
        await collect(backend, ask())

    assert f"127.0.0.1:{port}" in str(caught.value)
    health = await backend.health()
    assert health.reachable is False


async def test_drop_mid_stream_raises_incomplete_with_partial_text(backend: WebSocketBackend, ws_server: FakeWsServer) -> None:
    ws_server.default = WsBehaviour(reply="a b c d e", drop_after_chunks=2)
    received: list[Event] = []

    with pytest.raises(StreamIncompleteError):
        async for event in backend.stream(ask()):
            received.append(event)

    assert text_of(received) == "a b "


async def test_drop_before_first_token_raises_connection_failed(backend: WebSocketBackend, ws_server: FakeWsServer) -> None:
    ws_server.script(WsBehaviour(drop_after_chunks=0), WsBehaviour(reply="back again"))

    with pytest.raises(ConnectionFailedError):
        await collect(backend, ask())
    events = await collect(backend, ask())

    assert text_of(events) == "back again"
    assert ws_server.connections == 2


async def test_drop_fails_every_request_in_flight(backend: WebSocketBackend, ws_server: FakeWsServer) -> None:
    ws_server.default = WsBehaviour(hang_before_first=3600)
    tasks = [asyncio.create_task(collect(backend, ask())) for _ in range(2)]
    await wait_for(lambda: ws_server.in_flight == 2)

    await ws_server.drop_all()
    results = await asyncio.gather(*tasks, return_exceptions=True)

    assert all(isinstance(result, ConnectionFailedError) for result in results)


async def test_malformed_frame_raises_retryable_error(backend: WebSocketBackend, ws_server: FakeWsServer) -> None:
    ws_server.default = WsBehaviour(reply="a b", malformed_after=1)

    with pytest.raises(RetryableError) as caught:
        await collect(backend, ask())

    assert "invalid protocol message" in str(caught.value)


async def test_first_token_timeout_cancels_the_request(ws_server: FakeWsServer) -> None:
    ws_server.default = WsBehaviour(hang_before_first=3600)
    backend = make_backend(ws_server.url, timeouts={"first_token": 0.2})

    with pytest.raises(UpstreamTimeoutError):
        await collect(backend, ask())
    await wait_for(lambda: ws_server.in_flight == 0)
    await backend.aclose()

    assert ws_server.cancels == [ws_server.requests[0].id]


def test_url_must_be_a_websocket_url() -> None:
    with pytest.raises(ValueError) as caught:
        make_backend("http://127.0.0.1:1/ws/chat")

    assert "must start with ws:// or wss://" in str(caught.value)


async def test_late_messages_after_ignored_cancel_are_dropped(backend: WebSocketBackend, ws_server: FakeWsServer) -> None:
    ws_server.script(WsBehaviour(reply="late " * 20, chunk_delay=0.01, ignore_cancel=True), WsBehaviour(reply="fresh reply"))
    stream = backend.stream(ask())
    await stream.__anext__()
    await stream.aclose()

    events = await collect(backend, ask())
    await wait_for(lambda: ws_server.in_flight == 0)

    assert text_of(events) == "fresh reply"
    assert len(ws_server.cancels) == 1
    assert ws_server.connections == 1


async def test_health_reports_a_running_server(backend: WebSocketBackend, ws_server: FakeWsServer) -> None:
    health = await backend.health()

    assert health.reachable is True
    assert health.backend == "remote"
    assert ws_server.connections == 1


# The backend against Parley's own /ws/chat endpoint, serving scripted models.

GATEWAY_KEY = "gw-key-5e1d-0123456789"


def gateway_backend(gateway: Gateway, **fields: object) -> WebSocketBackend:
    config = {
        "name": "upstream-parley",
        "kind": "websocket",
        "url": gateway.url.replace("http", "ws", 1) + "/ws/chat",
        "models": [{"name": "remote-echo", "upstream": "echo"}, {"name": "remote-slow", "upstream": "slow"}],
        **fields,
    }
    env = {"GATEWAY_KEY": GATEWAY_KEY}
    backend = create_backend(settings_class("websocket").model_validate(config), BackendContext(env=env))
    assert isinstance(backend, WebSocketBackend)
    return backend


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    async with run_gateway(gateway_config(SCRIPTED_BACKEND, SLOW_BACKEND)) as running:
        yield running


async def test_gateway_streams_a_scripted_reply(gateway: Gateway) -> None:
    backend = gateway_backend(gateway)
    request = ChatRequest(messages=(Message.text("user", "count now"),), model="remote-echo")

    events = await collect(backend, request)
    await backend.aclose()

    assert text_of(events) == "one two three four five six"
    assert any(isinstance(e, Usage) for e in events)
    assert events[-1] == Finished(reason="stop", backend="upstream-parley", model="remote-echo")


async def test_gateway_error_keeps_its_class_and_retry_after(gateway: Gateway) -> None:
    backend = gateway_backend(gateway)
    request = ChatRequest(messages=(Message.text("user", "fail early"),), model="remote-echo")

    with pytest.raises(RateLimitedError) as caught:
        await collect(backend, request)
    await backend.aclose()

    assert caught.value.retry_after == 2


async def test_gateway_interrupted_reply_raises_its_error(gateway: Gateway) -> None:
    backend = gateway_backend(gateway)
    request = ChatRequest(messages=(Message.text("user", "fail late"),), model="remote-echo")
    received: list[Event] = []

    with pytest.raises(StreamIncompleteError) as caught:
        async for event in backend.stream(request):
            received.append(event)
    await backend.aclose()

    assert text_of(received) == "one two "
    assert caught.value.retryable is True
    assert "interrupted (overloaded)" in str(caught.value)
    assert caught.value.backend == "upstream-parley"


async def test_gateway_cancel_stops_the_scripted_stream(gateway: Gateway) -> None:
    backend = gateway_backend(gateway)
    slow = gateway.scripted("slow")
    request = ChatRequest(messages=(Message.text("user", "go"),), model="remote-slow")

    stream = backend.stream(request)
    first = await stream.__anext__()
    await stream.aclose()
    await wait_for(lambda: slow.in_flight == 0)
    await backend.aclose()

    assert first == TextDelta("tick ")


async def test_gateway_with_keys_admits_the_configured_key() -> None:
    config = gateway_config(SCRIPTED_BACKEND)
    async with run_gateway(config, env={"PARLEY_API_KEYS": GATEWAY_KEY}) as running:
        admitted = gateway_backend(running, api_key_env="GATEWAY_KEY")
        rejected = gateway_backend(running)
        request = ChatRequest(messages=(Message.text("user", "count"),), model="remote-echo")

        events = await collect(admitted, request)
        with pytest.raises(AuthError):
            await collect(rejected, request)
        await admitted.aclose()
        await rejected.aclose()

    assert text_of(events) == "one two three four five six"


async def test_server_error_is_not_answered_with_cancel(backend: WebSocketBackend, ws_server: FakeWsServer) -> None:
    ws_server.script(WsBehaviour(error_code="overloaded"), WsBehaviour(reply="after"))

    with pytest.raises(OverloadedError):
        await collect(backend, ask())
    events = await collect(backend, ask())

    assert text_of(events) == "after"
    assert ws_server.cancels == []
