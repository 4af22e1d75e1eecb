"""`/ws/chat` over a real WebSocket: several requests per connection, cancel, bad frames, auth."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.websockets import WebSocketDisconnect, WebSocketState
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from api.auth import ApiKeys
from api.services import ApiServices
from api.ws_routes import ChatSession
from backends.base import Backend
from backends.router import Router
from backends.types import ChatRequest, Event, ModelInfo, TextDelta
from config import ServerSettings
from tests.fakes.openai_server import Behaviour, FakeOpenAIServer
from tests.gateway_setup import SCRIPTED_BACKEND, SLOW_BACKEND, Gateway, gateway_config, openai_backend, run_gateway

KEY = "ws-test-key-0123456789"


@pytest.fixture
async def gateway(openai_server: FakeOpenAIServer) -> AsyncIterator[Gateway]:
    config = gateway_config(SCRIPTED_BACKEND, SLOW_BACKEND, openai_backend("fake", openai_server.base_url, "fake-chat"))
    async with run_gateway(config) as running:
        yield running


@pytest.fixture
async def ws(gateway: Gateway) -> AsyncIterator[ClientConnection]:
    async with connect(gateway.url.replace("http", "ws", 1) + "/ws/chat") as connection:
        yield connection


def request(request_id: str, model: str, text: str, **extra: Any) -> str:
    message = {"type": "request", "id": request_id, "model": model, "messages": [{"role": "user", "content": text}], **extra}
    return json.dumps(message)


async def receive(connection: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(connection.recv(), timeout=10))
    return message


async def receive_until_done(connection: ClientConnection, request_id: str) -> list[dict[str, Any]]:
    """Collect messages until `request_id` ends with done or error; other ids' messages are kept too."""
    messages: list[dict[str, Any]] = []
    while True:
        message = await receive(connection)
        messages.append(message)
        if message["id"] == request_id and message["type"] in ("done", "error"):
            return messages


def text_of(messages: list[dict[str, Any]], request_id: str, kind: str = "delta") -> str:
    return "".join(m["text"] for m in messages if m["id"] == request_id and m["type"] == kind)


async def test_request_streams_deltas_usage_and_done(ws: ClientConnection) -> None:
    await ws.send(request("r1", "thinker", "think"))

    messages = await receive_until_done(ws, "r1")

    assert text_of(messages, "r1", "reasoning") == "Two and two."
    assert text_of(messages, "r1") == "It is 4."
    usage = [m for m in messages if m["type"] == "usage"]
    assert usage[0]["completion_tokens"] == 6
    done = messages[-1]
    assert done["type"] == "done"
    assert done["reason"] == "stop"
    assert done["served_by"] == "script/thinker"


async def test_two_requests_share_connection(ws: ClientConnection, gateway: Gateway) -> None:
    await ws.send(request("slow-1", "slow", "go"))
    first = await receive(ws)
    assert first == {"type": "delta", "id": "slow-1", "text": "tick "}

    await ws.send(request("fast-1", "echo", "count"))
    messages = await receive_until_done(ws, "fast-1")

    assert text_of(messages, "fast-1") == "one two three four five six"
    assert messages[-1]["type"] == "done"
    assert gateway.scripted("slow").in_flight == 1


async def test_cancel_stops_one_request(ws: ClientConnection, gateway: Gateway) -> None:
    await ws.send(request("slow-1", "slow", "go"))
    assert (await receive(ws))["id"] == "slow-1"

    await ws.send(json.dumps({"type": "cancel", "id": "slow-1"}))
    messages = await receive_until_done(ws, "slow-1")

    assert messages[-1] == {
        "type": "done",
        "id": "slow-1",
        "reason": "cancelled",
        "served_by": "slow/slow",
        "backend": "slow",
        "model": "slow",
        "cached": False,
        "failures": [],
        "error": None,
    }
    assert gateway.scripted("slow").in_flight == 0

    await ws.send(request("after", "echo", "still open"))
    assert text_of(await receive_until_done(ws, "after"), "after") == "still open"


async def test_cancel_before_text_names_nobody(gateway: Gateway) -> None:
    slow_start = {**SLOW_BACKEND, "name": "late", "chunk_delay": 0, "first_token_delay": 30, "models": [{"name": "late"}]}
    async with run_gateway(gateway_config(slow_start)) as running:
        async with connect(running.url.replace("http", "ws", 1) + "/ws/chat") as connection:
            await connection.send(request("early", "late", "go"))
            await connection.send(json.dumps({"type": "cancel", "id": "early"}))
            messages = await receive_until_done(connection, "early")

    done = messages[-1]
    assert done["reason"] == "cancelled"
    assert done["served_by"] == ""
    assert done["model"] == ""


async def test_cancel_after_fallback_names_serving_model() -> None:
    failing = {"name": "broken", "kind": "scripted", "models": [{"name": "first", "fallback": ["slow"]}], "replies": [{"error": "overloaded"}]}
    async with run_gateway(gateway_config(failing, SLOW_BACKEND)) as running:
        async with connect(running.url.replace("http", "ws", 1) + "/ws/chat") as connection:
            await connection.send(request("fb", "first", "go"))
            while (await receive(connection))["type"] != "delta":
                pass
            await connection.send(json.dumps({"type": "cancel", "id": "fb"}))
            messages = await receive_until_done(connection, "fb")

    done = messages[-1]
    assert done["reason"] == "cancelled"
    assert done["served_by"].startswith("slow/slow after first: ")
    assert done["backend"] == "slow"
    assert done["model"] == "slow"
    assert len(done["failures"]) == 1
    assert done["failures"][0].startswith("first: ")


async def test_cancel_closes_upstream_request(ws: ClientConnection, openai_server: FakeOpenAIServer) -> None:
    openai_server.script(Behaviour(reply="word " * 500, chunk_delay=0.05))
    await ws.send(request("up", "fake-chat", "go"))
    assert (await receive(ws))["type"] == "delta"

    await ws.send(json.dumps({"type": "cancel", "id": "up"}))
    messages = await receive_until_done(ws, "up")

    assert messages[-1]["reason"] == "cancelled"
    await openai_server.wait_until(lambda: openai_server.disconnects == 1, timeout=10)
    assert openai_server.completed == 0


async def test_cancel_of_unknown_id_is_ignored(ws: ClientConnection) -> None:
    await ws.send(json.dumps({"type": "cancel", "id": "never-sent"}))
    await ws.send(request("next", "echo", "hello"))

    messages = await receive_until_done(ws, "next")

    assert [m["id"] for m in messages] == ["next"] * len(messages)
    assert text_of(messages, "next") == "hello"


async def test_closing_connection_closes_upstream(gateway: Gateway, openai_server: FakeOpenAIServer) -> None:
    openai_server.script(Behaviour(reply="word " * 500, chunk_delay=0.05))
    async with connect(gateway.url.replace("http", "ws", 1) + "/ws/chat") as connection:
        await connection.send(request("up", "fake-chat", "go"))
        assert (await receive(connection))["type"] == "delta"

    await openai_server.wait_until(lambda: openai_server.disconnects == 1, timeout=10)
    assert openai_server.completed == 0


async def test_failure_after_text_puts_error_in_done(ws: ClientConnection) -> None:
    await ws.send(request("late", "echo", "fail late"))

    messages = await receive_until_done(ws, "late")
    await ws.send(request("next", "echo", "still open"))
    following = await receive(ws)

    assert text_of(messages, "late") == "one two "
    assert [m["kind"] for m in messages if m["type"] == "notice"] == ["interrupted"]
    done = messages[-1]
    assert done["type"] == "done"
    assert done["reason"] == "error"
    assert done["failures"] == ["echo: overloaded"]
    assert done["error"]["code"] == "stream_incomplete"
    assert done["error"]["retryable"] is True
    assert "interrupted (overloaded)" in done["error"]["message"]
    # The done is the request's last message: no separate error follows it.
    assert following["id"] == "next"


async def test_non_json_frame_gets_error_and_stays_open(ws: ClientConnection) -> None:
    await ws.send("this is not json")

    error = await receive(ws)

    assert error["type"] == "error"
    assert error["id"] is None
    assert error["code"] == "bad_request"
    assert "not valid JSON" in error["message"]
    await ws.send(request("ok", "echo", "still here"))
    assert text_of(await receive_until_done(ws, "ok"), "ok") == "still here"


async def test_deeply_nested_frame_gets_error(ws: ClientConnection) -> None:
    await ws.send("[" * 3000)

    error = await receive(ws)

    assert error["id"] is None
    assert error["code"] == "bad_request"
    await ws.send(request("ok", "echo", "still here"))
    assert text_of(await receive_until_done(ws, "ok"), "ok") == "still here"


async def test_invalid_request_gets_error_for_its_id(ws: ClientConnection) -> None:
    await ws.send(request("bad", "echo", "hi", temperature=9))

    error = await receive(ws)

    assert error["type"] == "error"
    assert error["id"] == "bad"
    assert error["code"] == "bad_request"
    assert "temperature" in error["message"]
    assert error["retryable"] is False


async def test_unknown_model_gets_not_found(ws: ClientConnection) -> None:
    await ws.send(request("r", "gpt-9", "hi"))

    error = await receive(ws)

    assert error["id"] == "r"
    assert error["code"] == "not_found"
    assert "echo" in error["fix"]


async def test_image_to_text_model_is_rejected(ws: ClientConnection) -> None:
    content = [{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]
    message = {"type": "request", "id": "img", "model": "echo", "messages": [{"role": "user", "content": content}]}
    await ws.send(json.dumps(message))

    error = await receive(ws)

    assert error["id"] == "img"
    assert error["code"] == "image_not_supported"
    assert "seer" in error["fix"]


async def test_duplicate_id_in_flight_is_rejected(ws: ClientConnection, gateway: Gateway) -> None:
    await ws.send(request("same", "slow", "go"))
    assert (await receive(ws))["id"] == "same"

    await ws.send(request("same", "echo", "again"))
    error = await receive(ws)

    assert error["type"] == "error"
    assert error["id"] == "same"
    assert "already in flight" in error["message"]
    assert gateway.scripted("slow").in_flight == 1


async def test_early_failure_error_for_id(ws: ClientConnection) -> None:
    await ws.send(request("f", "echo", "fail early"))

    error = await receive(ws)

    assert error["type"] == "error"
    assert error["id"] == "f"
    assert error["code"] == "rate_limited"
    assert error["retryable"] is True
    assert error["retry_after"] == 2


async def test_limits_per_connection() -> None:
    config = gateway_config(SCRIPTED_BACKEND, SLOW_BACKEND, max_body_bytes=4096, ws_max_in_flight=2)
    async with run_gateway(config) as gateway, connect(gateway.url.replace("http", "ws", 1) + "/ws/chat") as connection:
        await connection.send(request("big", "echo", "x" * 5000))
        too_large = await receive(connection)
        await connection.send(request("s1", "slow", "go"))
        await connection.send(request("s2", "slow", "go"))
        await connection.send(request("s3", "slow", "go"))
        messages = [await receive(connection) for _ in range(3)]

    assert too_large["id"] is None
    assert too_large["code"] == "input_too_large"
    assert "server.max_body_bytes" in too_large["message"]
    errors = [m for m in messages if m["type"] == "error"]
    assert len(errors) == 1
    assert errors[0]["id"] == "s3"
    assert errors[0]["code"] == "rate_limited"
    assert "server.ws_max_in_flight" in errors[0]["message"]
    assert sorted(m["id"] for m in messages if m["type"] == "delta") == ["s1", "s2"]


async def ws_with_keys(gateway_url: str, headers: dict[str, str] | None = None) -> ClientConnection:
    return await connect(gateway_url.replace("http", "ws", 1) + "/ws/chat", additional_headers=headers)


@pytest.fixture
async def keyed_gateway() -> AsyncIterator[Gateway]:
    async with run_gateway(gateway_config(SCRIPTED_BACKEND), env={"PARLEY_API_KEYS": f"other, {KEY}"}) as running:
        yield running


async def test_auth_message_admits_client(keyed_gateway: Gateway) -> None:
    connection = await ws_with_keys(keyed_gateway.url)
    async with connection:
        await connection.send(json.dumps({"type": "auth", "token": KEY}))
        await connection.send(request("r", "echo", "hello"))

        assert text_of(await receive_until_done(connection, "r"), "r") == "hello"


async def test_bearer_header_admits_client(keyed_gateway: Gateway) -> None:
    connection = await ws_with_keys(keyed_gateway.url, {"Authorization": f"Bearer {KEY}"})
    async with connection:
        await connection.send(request("r", "echo", "hello"))

        assert text_of(await receive_until_done(connection, "r"), "r") == "hello"


async def test_silent_client_closed_after_auth_timeout() -> None:
    config = gateway_config(SCRIPTED_BACKEND, ws_auth_timeout=0.5)
    async with run_gateway(config, env={"PARLEY_API_KEYS": KEY}) as gateway:
        connection = await ws_with_keys(gateway.url)
        async with connection:
            error = await receive(connection)
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(connection.recv(), timeout=10)

    assert error["code"] == "auth_failed"
    assert connection.close_code == 1008


@pytest.mark.parametrize(
    "first_message",
    [
        {"type": "auth", "token": "wrong"},
        {"type": "request", "id": "r", "model": "echo", "messages": [{"role": "user", "content": "hi"}]},
    ],
)
async def test_missing_or_wrong_key_closes_connection(keyed_gateway: Gateway, first_message: dict[str, Any]) -> None:
    connection = await ws_with_keys(keyed_gateway.url)
    async with connection:
        await connection.send(json.dumps(first_message))

        error = await receive(connection)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(connection.recv(), timeout=10)

    assert error["type"] == "error"
    assert error["id"] is None
    assert error["code"] == "auth_failed"
    assert KEY not in json.dumps(error)
    assert connection.close_code == 1008
    assert keyed_gateway.scripted().received == []


class ScriptedSocket:
    """Stands in for Starlette's WebSocket, so a test decides when frames arrive and when sends fail."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.application_state = WebSocketState.CONNECTED
        self.frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.client_gone = False
        self.disconnect_taken = asyncio.Event()

    def send_frame(self, message: dict[str, Any]) -> None:
        self.frames.put_nowait({"type": "websocket.receive", "text": json.dumps(message)})

    def disconnect(self) -> None:
        self.frames.put_nowait({"type": "websocket.disconnect", "code": 1000})

    async def receive(self) -> dict[str, Any]:
        frame = await self.frames.get()
        if frame["type"] == "websocket.disconnect":
            self.disconnect_taken.set()
        return frame

    async def send_text(self, text: str) -> None:
        if self.client_gone:
            raise WebSocketDisconnect(code=1006)
        self.sent.put_nowait(json.loads(text))

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.client_gone = True


class SlowCloseBackend(Backend):
    """Streams one delta, then a second on `next_chunk`, then waits. Closing its stream waits for `release`."""

    name = "held"

    def __init__(self) -> None:
        self.next_chunk = asyncio.Event()
        self.closing = asyncio.Event()
        self.release = asyncio.Event()
        self.close_interrupted = False
        self.closed = False

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(name="held", backend="held", upstream="held")]

    async def stream(self, request: ChatRequest) -> AsyncIterator[Event]:
        try:
            yield TextDelta("first ")
            await self.next_chunk.wait()
            yield TextDelta("second ")
            await asyncio.Event().wait()
        finally:
            # Like closing an HTTP response: an await that a cancel can interrupt.
            self.closing.set()
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.close_interrupted = True
                raise
            self.closed = True


@pytest.mark.parametrize("ending", ["send_failed", "cancelled"])
async def test_leaving_client_waits_for_upstream_close(ending: str) -> None:
    backend = SlowCloseBackend()
    router = Router({}, {"held": backend}, {"held": backend.models()[0]})
    services = ApiServices(router=router, server=ServerSettings(), api_keys=ApiKeys([], "PARLEY_API_KEYS"))
    socket = ScriptedSocket()
    session = asyncio.create_task(ChatSession(socket, services).run())  # type: ignore[arg-type]

    socket.send_frame({"type": "request", "id": "r", "model": "held", "messages": [{"role": "user", "content": "go"}]})
    first = await asyncio.wait_for(socket.sent.get(), timeout=10)
    assert first == {"type": "delta", "id": "r", "text": "first "}

    # The request begins to end and its stream starts closing the upstream request...
    if ending == "send_failed":
        socket.client_gone = True
        backend.next_chunk.set()
    else:
        socket.send_frame({"type": "cancel", "id": "r"})
    await asyncio.wait_for(backend.closing.wait(), timeout=10)

    # ...when the client leaves. The session must wait for that close, not cancel it.
    socket.disconnect()
    await asyncio.wait_for(socket.disconnect_taken.wait(), timeout=10)
    backend.release.set()
    await asyncio.wait_for(session, timeout=10)

    assert backend.close_interrupted is False
    assert backend.closed is True
