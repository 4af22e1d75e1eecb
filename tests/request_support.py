"""A served app and clients for the request validation tests: HTTP and `/ws/chat` side by side."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.gateway_setup import SCRIPTED_BACKEND, Gateway, gateway_config, run_gateway

# Retries and the canned reply are off. The cache keeps its default (on, in memory),
# because a lone surrogate used to fail there while the cache key was built.
RESILIENCE: dict[str, Any] = {"retry": {"max_retries": 0}, "fallback": {"canned_reply": False}}


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    async with run_gateway(gateway_config(SCRIPTED_BACKEND, resilience=RESILIENCE)) as running:
        yield running


@pytest.fixture
async def http(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.v1) as client:
        yield client


@pytest.fixture
async def ws(gateway: Gateway) -> AsyncIterator[ClientConnection]:
    async with connect(gateway.url.replace("http", "ws", 1) + "/ws/chat") as connection:
        yield connection


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "echo", "messages": [{"role": "user", "content": "hi"}], **fields}


def ws_request(request_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"type": "request", "id": request_id, **body}


async def post_raw(http: httpx.AsyncClient, body: str) -> httpx.Response:
    return await http.post("/chat/completions", content=body.encode(), headers={"content-type": "application/json"})


async def receive(connection: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(connection.recv(), timeout=10))
    return message


async def final_message(connection: ClientConnection, request_id: str) -> dict[str, Any]:
    """Return the `done` or `error` that ends `request_id`."""
    while True:
        message = await receive(connection)
        if message["id"] == request_id and message["type"] in ("done", "error"):
            return message


async def assert_connection_serves(connection: ClientConnection) -> None:
    await connection.send(json.dumps(ws_request("after", chat())))
    assert (await final_message(connection, "after"))["type"] == "done"


def http_error(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    return error
