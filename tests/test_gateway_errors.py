"""Bad input and failing backends get OpenAI error JSON with the right status and a clear message."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.openai_server import Behaviour, FakeOpenAIServer
from tests.gateway_setup import SCRIPTED_BACKEND, Gateway, closed_port, gateway_config, openai_backend, run_gateway

PNG_URL = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    down = openai_backend("down", f"http://127.0.0.1:{closed_port()}/v1", "down-chat", timeouts={"connect": 3})
    config = gateway_config(SCRIPTED_BACKEND, down, max_prompt_chars=100, max_body_bytes=4096)
    async with run_gateway(config) as running:
        yield running


@pytest.fixture
async def http(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.v1) as client:
        yield client


def user(content: Any, model: str = "echo", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


def image_message(url: str, model: str = "seer") -> dict[str, Any]:
    return user([{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": url}}], model=model)


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"message", "type", "code", "param"}
    return error


async def test_malformed_json_is_400(http: httpx.AsyncClient) -> None:
    response = await http.post("/chat/completions", content=b'{"model": "echo", "messages": [', headers={"content-type": "application/json"})

    assert response.status_code == 400
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "bad_request"
    assert "not valid JSON" in error["message"]


async def test_deeply_nested_json_is_400(http: httpx.AsyncClient) -> None:
    response = await http.post("/chat/completions", content=b"[" * 3000, headers={"content-type": "application/json"})

    assert response.status_code == 400
    assert "too deeply" in error_of(response)["message"]


async def test_body_not_object_is_400(http: httpx.AsyncClient) -> None:
    response = await http.post("/chat/completions", json=["echo"])

    assert response.status_code == 400
    assert "must be a JSON object" in error_of(response)["message"]


async def test_missing_messages_names_field(http: httpx.AsyncClient) -> None:
    response = await http.post("/chat/completions", json={"model": "echo"})

    assert response.status_code == 400
    error = error_of(response)
    assert error["param"] == "messages"
    assert "messages is missing" in error["message"]


async def test_wrong_type_names_field(http: httpx.AsyncClient) -> None:
    response = await http.post("/chat/completions", json=user("hi", temperature="hot"))

    assert response.status_code == 400
    error = error_of(response)
    assert error["param"] == "temperature"
    assert "'hot'" in error["message"]


async def test_out_of_range_names_field(http: httpx.AsyncClient) -> None:
    response = await http.post("/chat/completions", json=user("hi", top_p=3))

    assert response.status_code == 400
    assert error_of(response)["param"] == "top_p"


async def test_unknown_role_names_message(http: httpx.AsyncClient) -> None:
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}, {"role": "tool", "content": "x"}]}

    response = await http.post("/chat/completions", json=body)

    assert response.status_code == 400
    error = error_of(response)
    assert error["param"] == "messages[1].role"
    assert "'tool'" in error["message"]


async def test_tools_are_rejected_by_name(http: httpx.AsyncClient) -> None:
    response = await http.post("/chat/completions", json=user("hi", tools=[{"type": "function"}]))

    assert response.status_code == 400
    error = error_of(response)
    assert error["param"] == "tools"
    assert "not supported" in error["message"]


async def test_several_choices_are_rejected(http: httpx.AsyncClient) -> None:
    response = await http.post("/chat/completions", json=user("hi", n=2))

    assert response.status_code == 400
    assert error_of(response)["param"] == "n"


async def test_unknown_model_is_404_listing_models(http: httpx.AsyncClient) -> None:
    response = await http.post("/chat/completions", json=user("hi", model="gpt-9"))

    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "not_found"
    assert "'gpt-9'" in error["message"]
    assert "down-chat, echo, seer, thinker" in error["message"]


async def test_image_to_text_model_names_vision_models(http: httpx.AsyncClient) -> None:
    response = await http.post("/chat/completions", json=image_message(PNG_URL, model="echo"))

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "image_not_supported"
    assert "'echo' cannot see images" in error["message"]
    assert "(seer)" in error["message"]


async def test_image_without_any_vision_model_says_to_add_one() -> None:
    config = gateway_config({"name": "script", "kind": "scripted", "models": [{"name": "echo"}]})

    async with run_gateway(config) as gateway, httpx.AsyncClient(base_url=gateway.v1) as client:
        response = await client.post("/chat/completions", json=image_message(PNG_URL, model="echo"))

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "image_not_supported"
    assert error["message"] == (
        "echo: model 'echo' cannot see images. "
        "No configured model can see images; remove the image or add a vision model to the config."
    )


async def test_remote_image_url_asks_for_data_url(http: httpx.AsyncClient) -> None:
    response = await http.post("/chat/completions", json=image_message("https://example.com/cat.png"))

    assert response.status_code == 400
    error = error_of(response)
    assert error["param"] == "messages[0].content[1].image_url.url"
    assert "data URL" in error["message"]


async def test_bad_base64_names_the_part(http: httpx.AsyncClient) -> None:
    response = await http.post("/chat/completions", json=image_message("data:image/png;base64,@@not-base64@@"))

    assert response.status_code == 400
    error = error_of(response)
    assert error["param"] == "messages[0].content[1].image_url.url"
    assert "not valid base64" in error["message"]


async def test_unsupported_image_type_lists_types(http: httpx.AsyncClient) -> None:
    response = await http.post("/chat/completions", json=image_message("data:text/html;base64,PGI+aGk8L2I+"))

    assert response.status_code == 400
    error = error_of(response)
    assert "'text/html'" in error["message"]
    assert "image/png" in error["message"]


async def test_unknown_part_type_is_named(http: httpx.AsyncClient) -> None:
    response = await http.post("/chat/completions", json=user([{"type": "input_audio", "input_audio": {}}]))

    assert response.status_code == 400
    error = error_of(response)
    assert error["param"] == "messages[0].content[0].type"
    assert "'input_audio'" in error["message"]


async def test_prompt_over_limit_is_413(http: httpx.AsyncClient) -> None:
    response = await http.post("/chat/completions", json=user("x" * 101))

    assert response.status_code == 413
    error = error_of(response)
    assert error["code"] == "input_too_large"
    assert "101 characters" in error["message"]
    assert "limit of 100" in error["message"]
    assert "server.max_prompt_chars" in error["message"]


async def test_body_over_limit_is_413(http: httpx.AsyncClient) -> None:
    response = await http.post("/chat/completions", json=image_message("data:image/png;base64," + "A" * 8000))

    assert response.status_code == 413
    assert "server.max_body_bytes" in error_of(response)["message"]


async def test_refused_connection_is_502_naming_backend_and_url(http: httpx.AsyncClient) -> None:
    response = await http.post("/chat/completions", json=user("hi", model="down-chat", stream=True))

    assert response.status_code == 502
    error = error_of(response)
    assert error["type"] == "server_error"
    assert error["code"] == "connection_failed"
    assert "down" in error["message"]
    assert "http://127.0.0.1:" in error["message"]


async def test_early_error_keeps_status(http: httpx.AsyncClient) -> None:
    response = await http.post("/chat/completions", json=user("fail early", stream=True))

    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    error = error_of(response)
    assert error["type"] == "rate_limit_error"
    assert error["code"] == "rate_limited"


async def test_mid_stream_error_event(http: httpx.AsyncClient) -> None:
    response = await http.post("/chat/completions", json=user("fail late", stream=True))

    assert response.status_code == 200
    data = [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: ")]
    assert '"content":"one "' in data[0]
    assert '"content":"two "' in data[1]
    assert '"code": "stream_incomplete"' in data[-1]
    assert "(overloaded)" in data[-1]
    assert "[DONE]" not in data


async def test_sdk_raises_on_error_mid_stream(gateway: Gateway) -> None:
    received: list[str] = []
    async with openai.AsyncOpenAI(base_url=gateway.v1, api_key="unused", max_retries=0) as client:
        stream = await client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "fail late"}], stream=True
        )
        with pytest.raises(openai.APIError) as caught:
            async for chunk in stream:
                received.append(chunk.choices[0].delta.content or "")

    assert "".join(received) == "one two "
    assert "interrupted (overloaded)" in caught.value.message


async def test_error_in_completion_not_streamed_keeps_status(http: httpx.AsyncClient) -> None:
    response = await http.post("/chat/completions", json=user("fail late"))

    assert response.status_code == 502
    error = error_of(response)
    assert error["code"] == "stream_incomplete"
    assert "(overloaded)" in error["message"]


async def test_interrupted_stream_error_is_english_in_chinese(http: httpx.AsyncClient) -> None:
    response = await http.post("/chat/completions", json=user("fail late", stream=True), headers={"Accept-Language": "zh-CN"})

    assert response.status_code == 200
    # The user's-language notice still goes out, as a comment.
    assert any(line.startswith(": notice interrupted:") and "中断" in line for line in response.text.splitlines())
    message = json.loads(response.text.splitlines()[-2].removeprefix("data: "))["error"]["message"]
    assert message == (
        "script/echo: the reply from echo was interrupted (overloaded); the text before this error was sent. "
        "The reply was cut off; retry it."
    )


async def test_interrupted_completion_promises_no_text(http: httpx.AsyncClient) -> None:
    response = await http.post("/chat/completions", json=user("fail late"), headers={"Accept-Language": "zh-CN"})

    assert response.status_code == 502
    message = error_of(response)["message"]
    assert "so far is kept" not in message
    assert "中断" not in message
    assert "returns no partial text" in message
    assert "set stream to true" in message


async def test_healthz_marks_unreachable_backend(gateway: Gateway) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{gateway.url}/healthz")

    assert response.status_code == 200
    body = response.json()
    reachable = {backend["name"]: backend["reachable"] for backend in body["backends"]}
    assert reachable == {"script": True, "down": False}
    assert body["status"] == "degraded"


async def test_failed_fallback_chain_keeps_status() -> None:
    # echo falls back to thinker; both hit the same rate-limited reply, so
    # the stream sends a fallback notice before the failure it ends with.
    backend = {**SCRIPTED_BACKEND, "models": [{"name": "echo", "fallback": ["thinker"]}, {"name": "thinker"}]}
    body = {"model": "echo", "messages": [{"role": "user", "content": "fail early"}], "stream": True}

    async with run_gateway(gateway_config(backend)) as running, httpx.AsyncClient() as client:
        response = await client.post(f"{running.v1}/chat/completions", json=body)
        received = running.scripted().received

    assert [request.model for request in received] == ["echo", "thinker"]
    assert response.status_code == 429
    assert error_of(response)["code"] == "rate_limited"


async def test_fallback_notice_precedes_reply() -> None:
    failing = {"name": "broken", "kind": "scripted", "models": [{"name": "first", "fallback": ["second"]}], "replies": [{"error": "overloaded"}]}
    working = {"name": "spare", "kind": "scripted", "models": [{"name": "second"}]}
    body = {"model": "first", "messages": [{"role": "user", "content": "hello"}], "stream": True}

    async with run_gateway(gateway_config(failing, working)) as running, httpx.AsyncClient() as client:
        response = await client.post(f"{running.v1}/chat/completions", json=body)

    assert response.status_code == 200
    lines = [line for line in response.text.splitlines() if line]
    assert lines[0].startswith(": notice falling_back:")
    assert '"role":"assistant","content":"hello"' in lines[1]
    assert ": served by spare/second after first: overloaded" in lines
    assert lines[-1] == "data: [DONE]"


async def test_stall_after_first_token_times_out(openai_server: FakeOpenAIServer) -> None:
    # The gateway reads the first event before the response starts. It reads the
    # rest in another task while it streams, and the chunk-gap deadline must hold there too.
    stalling = openai_backend("stalling", openai_server.base_url, "stall-chat", timeouts={"chunk_gap": 0.3, "total": 60})
    openai_server.script(Behaviour(chunks=("first ", "second"), chunk_delay=30))

    async with run_gateway(gateway_config(stalling)) as running:
        async with httpx.AsyncClient(base_url=running.v1, timeout=60) as client:
            body = {"model": "stall-chat", "stream": True, "messages": [{"role": "user", "content": "go"}]}
            async with client.stream("POST", "/chat/completions", json=body) as response:
                lines = [line async for line in response.aiter_lines() if line.startswith("data: ")]

    assert "first " in lines[0]
    assert "second" not in "".join(lines)
    error = json.loads(lines[-1].removeprefix("data: "))["error"]
    assert error["code"] == "stream_incomplete"
    assert "interrupted (timeout)" in error["message"]
