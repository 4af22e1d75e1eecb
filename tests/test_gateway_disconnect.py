"""A client that goes away cancels the upstream request, before and after the first chunk."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from tests.fakes.openai_server import Behaviour, FakeOpenAIServer
from tests.gateway_setup import SLOW_BACKEND, Gateway, gateway_config, openai_backend, run_gateway


@pytest.fixture
async def gateway(openai_server: FakeOpenAIServer) -> AsyncIterator[Gateway]:
    config = gateway_config(SLOW_BACKEND, openai_backend("fake", openai_server.base_url, "fake-chat"))
    async with run_gateway(config) as running:
        yield running


def chat(model: str, stream: bool = True) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "go"}], "stream": stream}


async def test_disconnect_mid_stream_closes_upstream(gateway: Gateway, openai_server: FakeOpenAIServer) -> None:
    openai_server.script(Behaviour(reply="word " * 500, chunk_delay=0.05))

    async with httpx.AsyncClient() as client:
        async with client.stream("POST", f"{gateway.v1}/chat/completions", json=chat("fake-chat")) as response:
            assert response.status_code == 200
            lines = response.aiter_lines()
            first = await anext(lines)
            assert '"content":"word"' in first

    await openai_server.wait_until(lambda: openai_server.disconnects == 1, timeout=10)
    assert openai_server.completed == 0
    assert openai_server.in_flight == 0


async def test_disconnect_before_first_token_closes_upstream(gateway: Gateway, openai_server: FakeOpenAIServer) -> None:
    openai_server.script(Behaviour(reply="late", hang_before_first_byte=30))

    async with httpx.AsyncClient(timeout=httpx.Timeout(5, read=0.5)) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(f"{gateway.v1}/chat/completions", json=chat("fake-chat"))

    await openai_server.wait_until(lambda: openai_server.disconnects == 1, timeout=10)
    assert openai_server.completed == 0


async def test_disconnect_from_completion_not_streamed_closes_upstream(
    gateway: Gateway, openai_server: FakeOpenAIServer
) -> None:
    openai_server.script(Behaviour(reply="word " * 500, chunk_delay=0.05))

    async with httpx.AsyncClient(timeout=httpx.Timeout(5, read=0.5)) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(f"{gateway.v1}/chat/completions", json=chat("fake-chat", stream=False))

    await openai_server.wait_until(lambda: openai_server.disconnects == 1, timeout=10)
    assert openai_server.completed == 0


async def test_disconnect_during_stall_stops_stream(gateway: Gateway) -> None:
    # The next chunk is 30 s away, so only listening for the disconnect, not
    # a failed write of that chunk, can stop the stream within the wait below.
    backend = gateway.scripted("slow")

    async with httpx.AsyncClient() as client:
        async with client.stream("POST", f"{gateway.v1}/chat/completions", json=chat("slow")) as response:
            lines = response.aiter_lines()
            assert '"content":"tick "' in await anext(lines)
            assert backend.in_flight == 1

    await _wait_for(lambda: backend.in_flight == 0)
    assert backend.in_flight == 0


async def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.01)


async def test_completed_stream_logs_no_disconnect(
    gateway: Gateway, openai_server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    openai_server.script(Behaviour(reply="short reply"))
    caplog.set_level("INFO", logger="api.openai_stream")

    for _ in range(5):
        async with httpx.AsyncClient() as client:
            async with client.stream("POST", f"{gateway.v1}/chat/completions", json=chat("fake-chat")) as response:
                body = "".join([line async for line in response.aiter_lines()])
        assert "data: [DONE]" in body

    await asyncio.sleep(0.2)
    disconnect_lines = [record for record in caplog.records if "disconnected mid-stream" in record.getMessage()]
    assert disconnect_lines == []
