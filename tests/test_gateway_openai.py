"""The OpenAI-compatible gateway driven by the official `openai` SDK over real HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator

import httpx
import openai
import pytest
from PIL import Image

from backends.types import ImagePart, TextPart
from tests.fakes.openai_server import Behaviour, FakeOpenAIServer
from tests.gateway_setup import SCRIPTED_BACKEND, Gateway, gateway_config, openai_backend, run_gateway

PNG_BYTES = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


@pytest.fixture
async def gateway(openai_server: FakeOpenAIServer) -> AsyncIterator[Gateway]:
    config = gateway_config(SCRIPTED_BACKEND, openai_backend("fake", openai_server.base_url, "fake-chat"))
    async with run_gateway(config) as running:
        yield running


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=gateway.v1, api_key="unused", max_retries=0) as sdk:
        yield sdk


async def test_models_lists_every_configured_model(client: openai.AsyncOpenAI) -> None:
    page = await client.models.list()

    owners = {model.id: model.owned_by for model in page.data}
    assert owners == {"echo": "script", "seer": "script", "thinker": "script", "fake-chat": "fake"}


async def test_completion_not_streamed(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "hello there"}]
    )

    assert completion.object == "chat.completion"
    assert completion.model == "echo"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "hello there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 2
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 2


async def test_completion_streamed_with_usage(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "count"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]

    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == "one two three four five six"
    assert chunks[0].choices[0].delta.role == "assistant"
    finish = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason]
    assert finish == ["stop"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 6
    assert len({chunk.id for chunk in chunks}) == 1


async def test_stream_without_usage_option_has_no_usage_chunk(gateway: Gateway) -> None:
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{gateway.v1}/chat/completions", json=body)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    data_lines = [line for line in response.text.splitlines() if line.startswith("data: ")]
    assert data_lines[-1] == "data: [DONE]"
    assert '"usage"' not in response.text
    assert ": served by script/echo" in response.text


async def test_reasoning_streams_as_reasoning_content(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="thinker", messages=[{"role": "user", "content": "think about 2+2"}], stream=True
    )
    chunks = [chunk async for chunk in stream]

    deltas = [chunk.choices[0].delta for chunk in chunks if chunk.choices]
    reasoning = "".join(getattr(delta, "reasoning_content", None) or "" for delta in deltas)
    content = "".join(delta.content or "" for delta in deltas)
    assert reasoning == "Two and two."
    assert content == "It is 4."


async def test_reasoning_in_completion_not_streamed(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="thinker", messages=[{"role": "user", "content": "think"}]
    )

    message = completion.choices[0].message
    assert message.content == "It is 4."
    assert getattr(message, "reasoning_content", None) == "Two and two."
    assert completion.usage is not None
    assert completion.usage.completion_tokens_details is not None
    assert completion.usage.completion_tokens_details.reasoning_tokens == 3


async def test_sampling_parameters_reach_backend(client: openai.AsyncOpenAI, gateway: Gateway) -> None:
    await client.chat.completions.create(
        model="echo",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        temperature=0.3,
        top_p=0.9,
        max_tokens=50,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        seed=42,
        stop=["END", "STOP"],
        user="user-7",
    )

    request = gateway.scripted().received[-1]
    assert request.model == "echo"
    assert request.user == "user-7"
    assert request.bypass_cache is False
    assert request.params.temperature == 0.3
    assert request.params.top_p == 0.9
    assert request.params.max_tokens == 50
    assert request.params.presence_penalty == 0.5
    assert request.params.frequency_penalty == -0.5
    assert request.params.seed == 42
    assert request.params.stop == ("END", "STOP")
    assert [message.role for message in request.messages] == ["system", "user"]


async def test_stop_string_and_max_completion_tokens(client: openai.AsyncOpenAI, gateway: Gateway) -> None:
    completion = await client.chat.completions.create(
        model="echo",
        messages=[{"role": "developer", "content": "rules"}, {"role": "user", "content": "count"}],
        stop="five",
        max_completion_tokens=3,
    )

    request = gateway.scripted().received[-1]
    assert request.params.stop == ("five",)
    assert request.params.max_tokens == 3
    assert request.messages[0].role == "system"
    assert completion.choices[0].message.content == "one two three "
    assert completion.choices[0].finish_reason == "length"


async def test_no_cache_header_sets_bypass_cache(client: openai.AsyncOpenAI, gateway: Gateway) -> None:
    await client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "fresh"}], extra_headers={"Cache-Control": "no-cache"}
    )

    assert gateway.scripted().received[-1].bypass_cache is True


async def test_image_data_url_reaches_vision_model(client: openai.AsyncOpenAI, gateway: Gateway) -> None:
    url = "data:image/png;base64," + base64.b64encode(PNG_BYTES).decode()

    await client.chat.completions.create(
        model="seer",
        messages=[
            {
                "role": "user",
                "content": [{"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": url}}],
            }
        ],
    )

    parts = gateway.scripted().received[-1].messages[0].parts
    assert parts[0] == TextPart("what is this")
    assert isinstance(parts[1], ImagePart)
    # The image pipeline re-encodes every image without metadata; the pixels stay.
    sent = Image.open(io.BytesIO(parts[1].data))
    assert parts[1].mime == "image/png"
    assert sent.size == (1, 1)
    assert sent.convert("RGBA").getpixel((0, 0)) == Image.open(io.BytesIO(PNG_BYTES)).convert("RGBA").getpixel((0, 0))


async def test_openai_backend_streams_through_gateway(
    client: openai.AsyncOpenAI, openai_server: FakeOpenAIServer
) -> None:
    openai_server.script(Behaviour(reply="Fake says hi to you", reasoning="hmm"))

    stream = await client.chat.completions.create(
        model="fake-chat", messages=[{"role": "user", "content": "hi"}], stream=True, temperature=0.7
    )
    chunks = [chunk async for chunk in stream]

    content = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    reasoning = "".join(getattr(chunk.choices[0].delta, "reasoning_content", None) or "" for chunk in chunks if chunk.choices)
    assert content == "Fake says hi to you"
    assert reasoning == "hmm"
    upstream = openai_server.chat_requests[-1].json
    assert upstream["model"] == "fake-chat"
    assert upstream["temperature"] == 0.7
    assert upstream["messages"][-1]["content"] == "hi"


async def test_openai_backend_completion_not_streamed(
    client: openai.AsyncOpenAI, openai_server: FakeOpenAIServer
) -> None:
    openai_server.script(Behaviour(reply="Plain reply"))

    completion = await client.chat.completions.create(model="fake-chat", messages=[{"role": "user", "content": "hi"}])

    assert completion.choices[0].message.content == "Plain reply"
    assert completion.choices[0].finish_reason == "stop"


async def test_healthz_reports_each_backend(gateway: Gateway) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{gateway.url}/healthz")

    assert response.status_code == 200
    body = response.json()
    reachable = {backend["name"]: backend["reachable"] for backend in body["backends"]}
    assert reachable == {"script": True, "fake": True}
    assert body["status"] == "ok"
    assert {"name": "fake-chat", "backend": "fake"} in body["models"]


async def test_cache_hit_and_no_cache_header() -> None:
    config = gateway_config(SCRIPTED_BACKEND, resilience={"retry": {"max_retries": 0}})
    body = {"model": "echo", "messages": [{"role": "user", "content": "cache me"}]}

    async with run_gateway(config) as running, httpx.AsyncClient(base_url=running.v1) as http:
        first = await http.post("/chat/completions", json=body)
        second = await http.post("/chat/completions", json=body)
        bypassed = await http.post("/chat/completions", json=body, headers={"Cache-Control": "no-cache"})
        received = running.scripted().received

    assert first.headers["x-parley-served-by"] == "script/echo"
    assert second.headers["x-parley-served-by"] == "script/echo (cached)"
    assert second.json()["choices"][0]["message"]["content"] == "cache me"
    assert bypassed.headers["x-parley-served-by"] == "script/echo"
    assert [request.bypass_cache for request in received] == [False, True]


async def test_model_retrieve_and_unknown(client: openai.AsyncOpenAI) -> None:
    model = await client.models.retrieve("seer")

    assert model.id == "seer"
    assert model.owned_by == "script"
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("gpt-9")


async def test_wrong_method_gets_405(gateway: Gateway) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{gateway.v1}/chat/completions")

    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    error = response.json()["error"]
    assert error["code"] == "method_not_allowed"
    assert "Send POST /v1/chat/completions" in error["message"]


async def test_unknown_v1_path_gets_openai_404(gateway: Gateway) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{gateway.v1}/embeddings", json={"input": "x"})

    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "not_found"
    assert "POST /v1/embeddings" in error["message"]


async def test_api_root_gets_openai_404(gateway: Gateway) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(gateway.v1)

    assert response.status_code == 404
    assert "GET /v1/models" in response.json()["error"]["message"]


async def test_cors_allows_configured_origin_only() -> None:
    config = gateway_config(SCRIPTED_BACKEND, cors_origins=["http://localhost:3000"])
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}

    async with run_gateway(config) as running, httpx.AsyncClient(base_url=running.v1) as http:
        allowed = await http.options("/chat/completions", headers={"Origin": "http://localhost:3000", **preflight})
        other = await http.options("/chat/completions", headers={"Origin": "http://evil.invalid", **preflight})

    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers


async def test_accept_language_sets_request_language(gateway: Gateway) -> None:
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}

    async with httpx.AsyncClient(base_url=gateway.v1) as http:
        await http.post("/chat/completions", json=body, headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"})
        await http.post("/chat/completions", json=body, headers={"Accept-Language": "en-US,en;q=0.9"})
        await http.post("/chat/completions", json=body)

    assert [request.language for request in gateway.scripted().received] == ["zh-CN", "en", "en"]


async def test_path_without_v1_names_base_url(gateway: Gateway) -> None:
    root = gateway.v1.removesuffix("/v1")

    async with httpx.AsyncClient() as http:
        chat = await http.post(f"{root}/chat/completions", json={"model": "echo", "messages": []})
        models = await http.get(f"{root}/models")

    for response in (chat, models):
        assert response.status_code == 404
        error = response.json()["error"]
        assert error["code"] == "not_found"
        assert f"base URL to {gateway.v1}" in error["message"]


async def test_head_models_and_healthz_are_200(gateway: Gateway) -> None:
    async with httpx.AsyncClient() as http:
        models = await http.head(f"{gateway.v1}/models")
        health = await http.head(gateway.v1.removesuffix("/v1") + "/healthz")

    for response in (models, health):
        assert response.status_code == 200
        assert response.content == b""
