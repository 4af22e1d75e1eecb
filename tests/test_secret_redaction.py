"""Secrets that an upstream repeats in its error text reach no client, log line or chat history."""

from __future__ import annotations

import json
import logging
from typing import Any

import gradio as gr
import httpx
import pytest
from websockets.asyncio.client import connect

from backends.errors import AuthError, BadRequestError, ParleyError
from backends.pipeline import build_router
from backends.redaction import MASK, Redactor
from backends.registry import BackendContext
from backends.router import Router
from backends.types import ChatRequest, Message
from config import parse_config
from tests.fakes.openai_server import Behaviour, FakeOpenAIServer
from tests.gateway_setup import gateway_config, openai_backend, run_gateway
from ui.chat_tab import ChatHandlers
from ui.services import UIServices

KEY = "sk-FAKESECRET-abc123xyz"
KEY_ENV = "PARLEY_REDACTION_TEST_KEY"
# Not shaped like a token, so only its exact value can mask it.
CLIENT_KEY = "parley-client-key-7f3e9"
CLIENT_KEYS_ENV = "PARLEY_REDACTION_CLIENT_KEYS"

ECHO_401 = Behaviour(status=401, echo_authorization=True)
ECHO_400 = Behaviour(status=400, echo_authorization=True)


def chat_body(stream: bool = False) -> dict[str, Any]:
    return {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "stream": stream}


def assert_clean(text: str) -> None:
    assert KEY not in text
    assert "FAKESECRET" not in text
    assert CLIENT_KEY not in text


# Redactor


def test_redactor_masks_exact_values() -> None:
    redactor = Redactor(["plain-value-123", "x"])

    assert redactor.redact("got plain-value-123 twice: plain-value-123") == f"got {MASK} twice: {MASK}"
    # A one-letter "secret" would mask ordinary text, so it is left alone.
    assert redactor.redact("x marks 401") == "x marks 401"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Incorrect API key provided: Bearer abcdef0123456789.", f"Incorrect API key provided: Bearer {MASK}."),
        ("authorization: basic dXNlcjpwYXNzd29yZA==", f"authorization: basic {MASK}"),
        ("key sk-proj-AbC_123-xyz789 is invalid", f"key {MASK} is invalid"),
        ('{"api_key": "k-1234567"}', f'{{"api_key": "{MASK}"}}'),
        ("url?apikey=abcd1234&x=1", f"url?apikey={MASK}&x=1"),
        ("redis://user:hunter22@127.0.0.1:6379/0", f"redis://user:{MASK}@127.0.0.1:6379/0"),
    ],
)
def test_redactor_masks_credential_shapes(text: str, expected: str) -> None:
    assert Redactor().redact(text) == expected


def test_redactor_keeps_ordinary_text() -> None:
    text = "HTTP 502 from http://127.0.0.1:8191/v1: an HTML error page: 502 Bad Gateway"

    assert Redactor(["secret-value"]).redact(text) == text


# The openai backend


@pytest.mark.parametrize(("behaviour", "error_type"), [(ECHO_401, AuthError), (ECHO_400, BadRequestError)])
async def test_backend_error_masks_echoed_key(openai_server: FakeOpenAIServer, behaviour: Behaviour, error_type: type[ParleyError]) -> None:
    config = gateway_config(openai_backend("fakeup", openai_server.base_url, "fake-model", api_key_env=KEY_ENV))
    openai_server.script(behaviour)
    error = await first_error(build_router(config, BackendContext(env={KEY_ENV: KEY})))

    assert type(error) is error_type
    assert openai_server.chat_requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert_clean(str(error))
    assert f"Bearer {MASK}" in error.detail


async def test_backend_error_masks_other_config_secrets(openai_server: FakeOpenAIServer) -> None:
    raw = {
        "server": {"api_keys_env": CLIENT_KEYS_ENV},
        "backends": [openai_backend("fakeup", openai_server.base_url, "fake-model", api_key_env=KEY_ENV)],
    }
    env = {KEY_ENV: KEY, CLIENT_KEYS_ENV: f"first-client-key-1, {CLIENT_KEY}"}
    openai_server.script(Behaviour(status=400, error_body={"error": {"message": f"unknown user {CLIENT_KEY}"}}))
    error = await first_error(build_router(parse_config(raw, source="test", env=env), BackendContext(env=env)))

    assert isinstance(error, BadRequestError)
    assert_clean(str(error))
    assert f"unknown user {MASK}" in error.detail


async def first_error(router: Router) -> ParleyError:
    """Send one request to fake-model and return the error it ends with; closes the router."""
    request = ChatRequest(messages=(Message.text("user", "hi"),), model="fake-model", allow_canned_reply=False)
    try:
        with pytest.raises(ParleyError) as caught:
            async for _ in router.stream(request):
                pass
    finally:
        await router.aclose()
    return caught.value


# The gateway: JSON errors, SSE error events, WebSocket error frames and logs


# A 401 opens the backend's circuit for minutes, so each 401 case gets a backend of its own.
HTTP_CASES = [("json401", ECHO_401, False), ("sse401", ECHO_401, True), ("json400", ECHO_400, False), ("sse400", ECHO_400, True)]
WS_CASES = [("ws401", ECHO_401), ("ws400", ECHO_400)]


async def test_gateway_responses_and_logs_mask_echoed_key(openai_server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    names = [name for name, *_ in HTTP_CASES + WS_CASES] + ["midstream"]
    backends = [openai_backend(f"up-{name}", openai_server.base_url, name, api_key_env=KEY_ENV) for name in names]
    seen: list[str] = []

    async with run_gateway(gateway_config(*backends), env={KEY_ENV: KEY}) as running, httpx.AsyncClient(timeout=10) as client:
        for name, behaviour, stream in HTTP_CASES:
            openai_server.script(behaviour)
            response = await client.post(f"{running.v1}/chat/completions", json={**chat_body(stream), "model": name})
            assert response.status_code == (502 if behaviour.status == 401 else 400)
            seen.append(response.text)

        # An error object inside a 200 stream, after the first text: the SSE error event.
        openai_server.script(Behaviour(status=200, echo_authorization=True, error_mid_stream_after=2))
        response = await client.post(f"{running.v1}/chat/completions", json={**chat_body(stream=True), "model": "midstream"})
        assert response.status_code == 200
        error_events = [line for line in response.text.splitlines() if line.startswith('data: {"error"')]
        assert error_events, response.text
        seen.append(response.text)

        async with connect(running.url.replace("http", "ws", 1) + "/ws/chat") as websocket:
            for name, behaviour in WS_CASES:
                openai_server.script(behaviour)
                request = {"type": "request", "id": name, **chat_body(), "model": name}
                request.pop("stream")
                await websocket.send(json.dumps(request))
                frame = json.loads(await websocket.recv())
                assert frame["type"] == "error"
                seen.append(json.dumps(frame))

    assert len(openai_server.chat_requests) == len(names)
    for text in seen:
        assert_clean(text)
    assert any(MASK in text for text in seen)
    assert caplog.records
    assert_clean(caplog.text)


# The chat tab's handler


async def test_chat_history_masks_echoed_key(openai_server: FakeOpenAIServer) -> None:
    config = gateway_config(openai_backend("fakeup", openai_server.base_url, "fake-model", api_key_env=KEY_ENV))
    router = build_router(config, BackendContext(env={KEY_ENV: KEY}))
    handlers = ChatHandlers(UIServices(router=router))
    # 400 first: the 401 opens the backend's circuit.
    openai_server.script(ECHO_400, ECHO_401)
    updates: list[Any] = []
    try:
        for _ in range(2):
            replies = handlers.chat(
                {"text": "hi", "files": []}, [], "fake-model", "", 0.7, 1.0, 256,
                gr.Request(headers={"accept-language": "en"}, session_hash="redaction"),
            )
            updates += [update async for update in replies]
    finally:
        await router.aclose()

    assert len(openai_server.chat_requests) == 2
    # The status block's details are what the page puts into the message's aria-label.
    shown = json.dumps(updates, default=str)
    assert "HTTP 400" in shown
    assert "HTTP 401" in shown
    for update in updates:
        assert_clean(json.dumps(update, default=str))
