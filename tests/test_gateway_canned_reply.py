"""Failed fallback chains as API clients and the browser UI see them, with the default resilience settings.

API clients get the error and its status unless `server.canned_reply_for_api`
is on; the UI gets the canned reply.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai
import pytest
from websockets.asyncio.client import connect

from backends.layers import messages
from backends.registry import BackendContext
from config import AppConfig
from tests.fakes.openai_server import Behaviour, FakeOpenAIServer
from tests.gateway_setup import closed_port, gateway_config, openai_backend, run_gateway
from ui.chat_tab import ChatHandlers
from ui.services import UIServices
from tests.test_ui_chat_handlers import answer_text, send, status_block

# The defaults of every layer except retries, which would only slow the refused connection down.
NO_RETRIES: dict[str, Any] = {"retry": {"max_retries": 0}}

CANNED_EN = messages.text("canned_reply", "en")


def down_config(**server: Any) -> tuple[AppConfig, str]:
    """Return a config whose model "down-chat" points at a closed port, and that backend's URL."""
    url = f"http://127.0.0.1:{closed_port()}/v1"
    config = gateway_config(openai_backend("down", url, "down-chat"), resilience=NO_RETRIES, **server)
    return config, url


def scripted_failure(code: str) -> dict[str, Any]:
    return {"name": "script", "kind": "scripted", "models": [{"name": "failing"}], "replies": [{"error": code}]}


def hello(model: str = "down-chat") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hello"}]}


async def test_refused_connection_is_502_for_sdk() -> None:
    config, url = down_config()

    async with run_gateway(config) as gateway:
        async with openai.AsyncOpenAI(base_url=gateway.v1, api_key="unused", max_retries=0) as client:
            with pytest.raises(openai.APIStatusError) as caught:
                await client.chat.completions.create(**hello())

    assert caught.value.status_code == 502
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["code"] == "connection_failed"
    assert body["message"].startswith("down/down-chat: ")
    assert url in body["message"]
    assert CANNED_EN not in body["message"]


async def test_refused_connection_is_502_for_sdk_stream() -> None:
    config, url = down_config()

    async with run_gateway(config) as gateway:
        async with openai.AsyncOpenAI(base_url=gateway.v1, api_key="unused", max_retries=0) as client:
            with pytest.raises(openai.APIStatusError) as caught:
                await client.chat.completions.create(**hello(), stream=True)

    assert caught.value.status_code == 502
    assert url in caught.value.message


@pytest.mark.parametrize(("code", "status"), [("rate_limited", 429), ("overloaded", 503), ("timeout", 504)])
async def test_failed_chain_keeps_status_for_sdk(code: str, status: int) -> None:
    config = gateway_config(scripted_failure(code), resilience=NO_RETRIES)

    async with run_gateway(config) as gateway:
        async with openai.AsyncOpenAI(base_url=gateway.v1, api_key="unused", max_retries=0) as client:
            with pytest.raises(openai.APIStatusError) as caught:
                await client.chat.completions.create(**hello("failing"))

    assert caught.value.status_code == status
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["code"] == code


async def test_api_falls_back_to_other_model_before_error() -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    down = openai_backend("down", url, "down-chat")
    down["models"][0]["fallback"] = ["spare"]
    spare = {"name": "local", "kind": "scripted", "models": [{"name": "spare"}], "replies": [{"text": "spare reply"}]}
    config = gateway_config(down, spare, resilience=NO_RETRIES)

    async with run_gateway(config) as gateway:
        async with openai.AsyncOpenAI(base_url=gateway.v1, api_key="unused", max_retries=0) as client:
            response = await client.chat.completions.with_raw_response.create(**hello())

    completion = response.parse()
    assert completion.choices[0].message.content == "spare reply"
    assert response.headers["x-parley-served-by"] == "local/spare after down-chat: connection_failed"


async def test_canned_reply_for_api_option_gives_200() -> None:
    config, _ = down_config(canned_reply_for_api=True)

    async with run_gateway(config) as gateway:
        async with openai.AsyncOpenAI(base_url=gateway.v1, api_key="unused", max_retries=0) as client:
            response = await client.chat.completions.with_raw_response.create(**hello())

    assert response.status_code == 200
    assert response.parse().choices[0].message.content == CANNED_EN
    assert response.headers["x-parley-served-by"] == "parley/canned-reply after down-chat: connection_failed"


async def ws_exchange(config: AppConfig) -> list[dict[str, Any]]:
    """Send one request for "down-chat" over /ws/chat and return the messages up to its done or error."""
    request = {"type": "request", "id": "r1", **hello()}
    received: list[dict[str, Any]] = []
    async with run_gateway(config) as gateway:
        async with connect(gateway.url.replace("http", "ws", 1) + "/ws/chat") as connection:
            await connection.send(json.dumps(request))
            while not received or received[-1]["type"] not in ("done", "error"):
                received.append(json.loads(await asyncio.wait_for(connection.recv(), timeout=10)))
    return received


async def test_refused_connection_is_error_on_websocket() -> None:
    config, url = down_config()

    received = await ws_exchange(config)

    last = received[-1]
    assert last["type"] == "error"
    assert last["code"] == "connection_failed"
    assert url in last["message"]
    assert [m for m in received if m["type"] == "delta"] == []


async def test_canned_reply_for_api_option_on_websocket() -> None:
    config, _ = down_config(canned_reply_for_api=True)

    received = await ws_exchange(config)

    assert received[-1]["type"] == "done"
    assert received[-1]["model"] == "canned-reply"
    assert "".join(m["text"] for m in received if m["type"] == "delta") == CANNED_EN


async def test_ui_chat_still_gets_canned_reply() -> None:
    from backends.pipeline import build_router

    config, _ = down_config()
    router = build_router(config, BackendContext())
    handlers = ChatHandlers(UIServices(router=router))

    try:
        history, _ = (await send(handlers, "hello", model="down-chat"))[-1]
    finally:
        await router.aclose()

    assert answer_text(history) == CANNED_EN
    assert status_block(history)["metadata"]["title"].startswith("canned-reply · parley")


@pytest.mark.parametrize(("upstream", "code"), [(401, "auth_failed"), (402, "insufficient_balance")])
@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_key_or_balance_failure_is_502_for_sdk(
    openai_server: FakeOpenAIServer, upstream: int, code: str, stream: bool
) -> None:
    openai_server.default = Behaviour(status=upstream)
    backend = openai_backend("deepseek", openai_server.base_url, "remote-chat", api_key_env="DEEPSEEK_API_KEY")
    config = gateway_config(backend, resilience=NO_RETRIES)

    async with run_gateway(config, env={"DEEPSEEK_API_KEY": "sk-parley-own"}) as gateway:
        async with openai.AsyncOpenAI(base_url=gateway.v1, api_key="unused", max_retries=0) as client:
            with pytest.raises(openai.APIStatusError) as caught:
                await client.chat.completions.create(**hello("remote-chat"), stream=stream)

    assert not isinstance(caught.value, openai.AuthenticationError)
    assert caught.value.status_code == 502
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["code"] == code
    assert body["type"] == "server_error"
    if code == "auth_failed":
        assert "DEEPSEEK_API_KEY" in caught.value.message
    assert "sk-parley-own" not in caught.value.message
    assert CANNED_EN not in caught.value.message
