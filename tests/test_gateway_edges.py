"""Edges of the OpenAI-compatible API: CORS, null usage, Retry-After, error wording, API keys, 500 logging."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest

from app import build_app
from backends.errors import ConfigError
from backends.registry import BackendContext
from tests.fakes.openai_server import Behaviour, FakeOpenAIServer
from tests.gateway_setup import BARE_RESILIENCE, SCRIPTED_BACKEND, gateway_config, openai_backend, run_gateway
from tests.serve_app import serve_app

ORIGIN = "http://localhost:3210"
# Request headers as the official openai JS SDK sends them from a browser, listed in its preflight.
SDK_HEADERS = (
    "authorization,content-type,x-stainless-arch,x-stainless-lang,x-stainless-os,"
    "x-stainless-package-version,x-stainless-retry-count,x-stainless-runtime,x-stainless-runtime-version"
)

# Replies that fail on purpose, by the start of the user's message.
FAILING_BACKEND: dict[str, Any] = {
    "name": "failing",
    "kind": "scripted",
    "models": [{"name": "failing"}],
    "replies": [
        {"match": "^deny", "error": "auth_failed", "error_message": "upstream rejected the key"},
        {"match": "^long", "error": "context_too_long", "error_message": "the prompt has 9000 tokens, over 8192"},
    ],
}
# A backend that reports no token counts, as some OpenAI-compatible servers do.
QUIET_BACKEND: dict[str, Any] = {
    "name": "quiet",
    "kind": "scripted",
    "report_usage": False,
    "models": [{"name": "quiet"}],
}
CACHE_ON: dict[str, Any] = {**BARE_RESILIENCE, "cache": {"enabled": True}}
NULL_USAGE = {"prompt_tokens": None, "completion_tokens": None, "total_tokens": None}


def chat(model: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


async def test_cors_preflight_allows_sdk_headers() -> None:
    config = gateway_config(SCRIPTED_BACKEND, cors_origins=[ORIGIN])
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": SDK_HEADERS}

    async with run_gateway(config) as running, httpx.AsyncClient(base_url=running.v1) as http:
        allowed = await http.options("/chat/completions", headers=preflight)
        reply = await http.post("/chat/completions", json=chat("echo", "hi"), headers={"Origin": ORIGIN})

    assert allowed.status_code == 200
    assert "x-stainless-os" in allowed.headers["access-control-allow-headers"].lower()
    assert reply.status_code == 200
    assert reply.headers["access-control-allow-origin"] == ORIGIN
    assert "x-parley-served-by" in reply.headers["access-control-expose-headers"].lower()


async def test_uncached_reply_without_usage_is_null() -> None:
    config = gateway_config(QUIET_BACKEND)

    async with run_gateway(config) as running, httpx.AsyncClient(base_url=running.v1) as http:
        reply = await http.post("/chat/completions", json=chat("quiet", "hello"))

    assert reply.status_code == 200
    assert reply.json()["usage"] == NULL_USAGE


async def test_cached_reply_usage_is_null() -> None:
    config = gateway_config(SCRIPTED_BACKEND, QUIET_BACKEND, resilience=CACHE_ON)

    async with run_gateway(config) as running, httpx.AsyncClient(base_url=running.v1) as http:
        replies = {}
        for model in ("echo", "quiet"):
            await http.post("/chat/completions", json=chat(model, "hello"))
            replies[model] = await http.post("/chat/completions", json=chat(model, "hello"))
        streamed = await http.post(
            "/chat/completions", json=chat("echo", "hello", stream=True, stream_options={"include_usage": True})
        )

    # The cache stores no token counts, so a hit reports none, whether or not the backend did.
    for model, reply in replies.items():
        assert "(cached)" in reply.headers["x-parley-served-by"], model
        assert reply.json()["usage"] == NULL_USAGE, model
    chunks = [json.loads(line[len("data: ") :]) for line in streamed.text.splitlines() if line.startswith("data: {")]
    assert chunks[-1]["usage"] == NULL_USAGE


async def test_circuit_open_sends_retry_after() -> None:
    config = gateway_config(FAILING_BACKEND)

    async with run_gateway(config) as running, httpx.AsyncClient(base_url=running.v1) as http:
        first = await http.post("/chat/completions", json=chat("failing", "deny"))
        second = await http.post("/chat/completions", json=chat("failing", "deny"))

    assert first.json()["error"]["code"] == "auth_failed"
    assert second.status_code == 503
    assert second.json()["error"]["code"] == "circuit_open"
    # A 401 or 402 from the upstream skips the endpoint for auth_cooldown_seconds, 300 by default.
    assert second.headers["retry-after"] == "300"
    assert "another 300 s" in second.json()["error"]["message"]


async def test_upstream_404_names_version_path(openai_server: FakeOpenAIServer) -> None:
    not_found = Behaviour(status=404, error_body={"detail": "Not Found"})
    openai_server.default = not_found
    openai_server.models_behaviour = not_found
    config = gateway_config(openai_backend("vllm", openai_server.base_url, "qwen"))

    async with run_gateway(config) as running, httpx.AsyncClient() as http:
        reply = await http.post(f"{running.v1}/chat/completions", json=chat("qwen", "hi"))
        health = await http.get(f"{running.url}/healthz")

    message = reply.json()["error"]["message"]
    assert reply.status_code == 404
    assert "model id 'qwen'" in message
    assert "version path such as /v1" in message
    detail = health.json()["backends"][0]["detail"]
    assert "version path such as /v1" in detail
    # GET /models itself returned 404, so a model id cannot be the cause.
    assert "model id" not in detail


async def test_context_too_long_uses_api_wording() -> None:
    config = gateway_config(FAILING_BACKEND)

    async with run_gateway(config) as running, httpx.AsyncClient(base_url=running.v1) as http:
        reply = await http.post("/chat/completions", json=chat("failing", "long"))
        streamed = await http.post("/chat/completions", json=chat("failing", "long", stream=True))

    message = reply.json()["error"]["message"]
    assert reply.json()["error"]["code"] == "context_too_long"
    assert "over 8192" in message
    assert "Send fewer or shorter messages" in message
    assert "undo" not in message
    assert "undo" not in streamed.text


@pytest.mark.parametrize("value", [" , ", "", ","])
def test_api_keys_set_but_empty_stop_startup(value: str) -> None:
    config = gateway_config(SCRIPTED_BACKEND)

    with pytest.raises(ConfigError) as raised:
        build_app(config, context=BackendContext(env={"PARLEY_API_KEYS": value}), ui=False, preload_models=False)

    assert "PARLEY_API_KEYS is set but contains no API key" in str(raised.value)
    assert "unset it" in str(raised.value)


def test_startup_logs_whether_keys_required(caplog: pytest.LogCaptureFixture) -> None:
    config = gateway_config(SCRIPTED_BACKEND)
    caplog.set_level(logging.INFO, logger="parley.app")

    build_app(config, context=BackendContext(env={"PARLEY_API_KEYS": "sk-first,sk-second"}), ui=False, preload_models=False)
    build_app(config, context=BackendContext(env={}), ui=False, preload_models=False)

    lines = [record.getMessage() for record in caplog.records if record.name == "parley.app"]
    assert lines == [
        "API keys are required: 2 keys from PARLEY_API_KEYS",
        "API keys are not required: PARLEY_API_KEYS is not set, so the API is open",
    ]
    assert "sk-first" not in caplog.text


async def test_unexpected_error_logs_one_traceback(caplog: pytest.LogCaptureFixture) -> None:
    config = gateway_config(SCRIPTED_BACKEND, cors_origins=[ORIGIN])
    app = build_app(config, context=BackendContext(env={}), ui=False, preload_models=False)

    async def broken() -> None:
        raise RuntimeError("broken on purpose")

    app.add_api_route("/broken", broken)

    async with serve_app(app) as url, httpx.AsyncClient() as http:
        reply = await http.get(f"{url}/broken", headers={"Origin": ORIGIN})

    assert reply.status_code == 500
    assert reply.json()["error"]["code"] == "internal_error"
    assert reply.headers["access-control-allow-origin"] == ORIGIN
    tracebacks = [record.name for record in caplog.records if record.exc_info]
    assert tracebacks == ["api.errors"]
