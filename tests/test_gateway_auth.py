"""Bearer keys on the HTTP API, and upstream secrets that never leave the server."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import openai
import pytest

from api.auth import ApiKeys, bearer_token
from tests.fakes.openai_server import Behaviour, FakeOpenAIServer
from tests.gateway_setup import SCRIPTED_BACKEND, Gateway, gateway_config, openai_backend, run_gateway

KEYS = "first-key-abcdef, second-key-123456"
UPSTREAM_SECRET = "sk-upstream-secret-9876543210"


@pytest.fixture
async def upstream() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer(api_key=UPSTREAM_SECRET) as server:
        yield server


@pytest.fixture
async def gateway(upstream: FakeOpenAIServer) -> AsyncIterator[Gateway]:
    backend = openai_backend("fake", upstream.base_url, "fake-chat", api_key_env="FAKE_UPSTREAM_KEY")
    env = {"PARLEY_API_KEYS": KEYS, "FAKE_UPSTREAM_KEY": UPSTREAM_SECRET}
    async with run_gateway(gateway_config(SCRIPTED_BACKEND, backend), env=env) as running:
        yield running


CHAT = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("header", [None, "Bearer wrong-key", "Basic Zmlyc3Qta2V5LWFiY2RlZg==", "Bearer", "first-key-abcdef"])
async def test_request_without_valid_key_is_401(gateway: Gateway, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}

    async with httpx.AsyncClient(base_url=gateway.v1, headers=headers) as client:
        models = await client.get("/models")
        chat = await client.post("/chat/completions", json=CHAT)

    for response in (models, chat):
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        error = response.json()["error"]
        assert error["type"] == "authentication_error"
        assert error["code"] == "auth_failed"
        assert "Authorization: Bearer" in error["message"]


async def test_auth_is_checked_before_the_body(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.v1) as client:
        response = await client.post("/chat/completions", content=b"{not json")

    assert response.status_code == 401


@pytest.mark.parametrize("key", ["first-key-abcdef", "second-key-123456"])
async def test_each_configured_key_is_accepted(gateway: Gateway, key: str) -> None:
    async with openai.AsyncOpenAI(base_url=gateway.v1, api_key=key, max_retries=0) as client:
        completion = await client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
        models = await client.models.list()

    assert completion.choices[0].message.content == "hi"
    assert "echo" in [model.id for model in models.data]


async def test_sdk_with_wrong_key_raises_authentication_error(gateway: Gateway) -> None:
    async with openai.AsyncOpenAI(base_url=gateway.v1, api_key="nope", max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError):
            await client.models.list()


async def test_healthz_needs_no_key(gateway: Gateway) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{gateway.url}/healthz")

    assert response.status_code == 200
    assert [backend["name"] for backend in response.json()["backends"]] == ["script", "fake"]


async def test_upstream_secret_is_used_but_never_returned(
    gateway: Gateway, upstream: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    upstream.script(Behaviour(reply="from upstream"), Behaviour(status=500))
    auth = {"Authorization": "Bearer first-key-abcdef"}

    async with httpx.AsyncClient(headers=auth) as client:
        ok = await client.post(f"{gateway.v1}/chat/completions", json={**CHAT, "model": "fake-chat"})
        failed = await client.post(f"{gateway.v1}/chat/completions", json={**CHAT, "model": "fake-chat", "stream": True})
        models = await client.get(f"{gateway.v1}/models")
        health = await client.get(f"{gateway.url}/healthz")

    assert ok.json()["choices"][0]["message"]["content"] == "from upstream"
    assert failed.status_code >= 500
    assert upstream.chat_requests[0].headers["authorization"] == f"Bearer {UPSTREAM_SECRET}"
    for response in (ok, failed, models, health):
        assert UPSTREAM_SECRET not in response.text
        assert "first-key-abcdef" not in response.text
    assert UPSTREAM_SECRET not in caplog.text
    assert "first-key-abcdef" not in caplog.text


def test_api_keys_parse_and_compare() -> None:
    keys = ApiKeys.from_env({"K": " a-key ,, b-key "}, "K")

    assert keys.enabled
    assert keys.accepts("a-key")
    assert keys.accepts("b-key")
    assert not keys.accepts("a-ke")
    assert not keys.accepts("")
    assert not keys.accepts(None)
    assert "a-key" not in repr(keys)
    assert not ApiKeys.from_env({}, "K").enabled
    assert ApiKeys.from_env({}, "K").accepts(None)


def test_bearer_token_parsing() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer") is None
    assert bearer_token(None) is None


ECHOED_KEY = "Authentication Fails, Your api key: ****3210 is invalid"


async def test_healthz_without_key_shows_only_names_and_reachability(
    gateway: Gateway, upstream: FakeOpenAIServer
) -> None:
    upstream.models_behaviour = Behaviour(status=401, error_body={"error": {"message": ECHOED_KEY, "type": "auth"}})

    async with httpx.AsyncClient() as client:
        missing = await client.get(f"{gateway.url}/healthz")
        wrong = await client.get(f"{gateway.url}/healthz", headers={"Authorization": "Bearer wrong-key"})

    for response in (missing, wrong):
        assert response.status_code == 200
        assert response.json() == {
            "status": "degraded",
            "backends": [{"name": "script", "reachable": True}, {"name": "fake", "reachable": False}],
        }
        assert upstream.base_url not in response.text


async def test_healthz_with_key_shows_details_without_upstream_text(
    gateway: Gateway, upstream: FakeOpenAIServer
) -> None:
    upstream.models_behaviour = Behaviour(status=401, error_body={"error": {"message": ECHOED_KEY, "type": "auth"}})

    async with httpx.AsyncClient(headers={"Authorization": "Bearer second-key-123456"}) as client:
        response = await client.get(f"{gateway.url}/healthz")

    body = response.json()
    details = {backend["name"]: backend["detail"] for backend in body["backends"]}
    assert details["fake"].startswith(f"GET {upstream.base_url}/models: HTTP 401 (auth_failed). ")
    assert "FAKE_UPSTREAM_KEY" in details["fake"]
    assert "3210" not in response.text
    assert "Authentication Fails" not in response.text
    assert {"name": "fake-chat", "backend": "fake"} in body["models"]
