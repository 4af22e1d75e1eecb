"""The layers seen through the gateway: the official openai SDK and GET /metrics."""

from __future__ import annotations

from typing import Any

import httpx
from openai import AsyncOpenAI

from tests.fakes.openai_server import Behaviour, FakeOpenAIServer
from tests.gateway_setup import gateway_config, openai_backend, run_gateway

LOCAL_REPLY = "The local model answers instead."

RESILIENCE: dict[str, Any] = {
    "cache": {"enabled": True},
    # Real backoff would make the test wait; one retry after 0.01 s keeps it short.
    "retry": {"max_retries": 1, "backoff_seconds": [0.01], "jitter": 0},
}


def backends(server: FakeOpenAIServer) -> list[dict[str, Any]]:
    remote = openai_backend("remote", server.base_url, "deepseek-chat")
    remote["models"][0]["fallback"] = ["smollm2"]
    local = {"name": "local", "kind": "scripted", "models": [{"name": "smollm2"}], "replies": [{"text": LOCAL_REPLY}]}
    return [remote, local]


async def test_sdk_streams_fallback_answer(openai_server: FakeOpenAIServer) -> None:
    openai_server.default = Behaviour(status=503)
    config = gateway_config(*backends(openai_server), resilience=RESILIENCE)

    async with run_gateway(config) as gateway:
        client = AsyncOpenAI(base_url=gateway.v1, api_key="unused", max_retries=0)
        stream = await client.chat.completions.create(
            model="deepseek-chat", messages=[{"role": "user", "content": "hello"}], stream=True
        )
        pieces = [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
        await client.close()

    assert "".join(pieces) == LOCAL_REPLY
    assert len(openai_server.chat_requests) == 2


async def test_sdk_non_streaming_gets_fallback_answer(openai_server: FakeOpenAIServer) -> None:
    openai_server.default = Behaviour(status=401)
    config = gateway_config(*backends(openai_server), resilience=RESILIENCE)

    async with run_gateway(config) as gateway:
        client = AsyncOpenAI(base_url=gateway.v1, api_key="unused", max_retries=0)
        completion = await client.chat.completions.create(
            model="deepseek-chat", messages=[{"role": "user", "content": "hello"}]
        )
        await client.close()

    assert completion.choices[0].message.content == LOCAL_REPLY
    assert len(openai_server.chat_requests) == 1


async def test_metrics_endpoint_reports_layers(openai_server: FakeOpenAIServer) -> None:
    openai_server.default = Behaviour(reply="Fresh reply.")
    openai_server.script(Behaviour(status=503))
    config = gateway_config(*backends(openai_server), resilience=RESILIENCE)

    async with run_gateway(config) as gateway:
        client = AsyncOpenAI(base_url=gateway.v1, api_key="unused", max_retries=0)
        for _ in range(2):
            await client.chat.completions.create(
                model="deepseek-chat", messages=[{"role": "user", "content": "same question"}], temperature=0
            )
        await client.close()
        async with httpx.AsyncClient() as http:
            response = await http.get(f"{gateway.url}/metrics")

    body = response.text
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'parley_requests_total{backend="remote",model="deepseek-chat",outcome="ok"} 1.0' in body
    assert 'parley_requests_total{backend="remote",model="deepseek-chat",outcome="cached"} 1.0' in body
    assert 'parley_retries_total{backend="remote",code="overloaded",model="deepseek-chat"} 1.0' in body
    assert 'parley_cache_lookups_total{model="deepseek-chat",result="hit"} 1.0' in body
    assert 'parley_cache_lookups_total{model="deepseek-chat",result="miss"} 1.0' in body
    assert 'parley_circuit_state{endpoint="remote"} 0.0' in body
    assert 'parley_time_to_first_token_seconds_count{backend="remote",model="deepseek-chat"} 2.0' in body
    assert "parley_request_duration_seconds_bucket" in body
    assert len(openai_server.chat_requests) == 2


async def test_metrics_endpoint_requires_api_key_when_set(openai_server: FakeOpenAIServer) -> None:
    config = gateway_config(*backends(openai_server), resilience=RESILIENCE)

    async with run_gateway(config, env={"PARLEY_API_KEYS": "k-123"}) as gateway:
        async with httpx.AsyncClient() as http:
            refused = await http.get(f"{gateway.url}/metrics")
            allowed = await http.get(f"{gateway.url}/metrics", headers={"Authorization": "Bearer k-123"})

    assert refused.status_code == 401
    assert allowed.status_code == 200
    assert "parley_requests_total" in allowed.text
