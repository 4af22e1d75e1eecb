"""Shared fixtures: real peers on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.fakes.openai_server import FakeOpenAIServer, serve_in_thread


@pytest.fixture
async def openai_server() -> AsyncIterator[FakeOpenAIServer]:
    """A fake OpenAI-compatible server running in the test's event loop."""
    async with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def openai_server_thread() -> Iterator[FakeOpenAIServer]:
    """A fake OpenAI-compatible server on its own loop in a background thread, for sync tests."""
    with serve_in_thread(FakeOpenAIServer()) as server:
        yield server
