"""Shared fixtures: real peers on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.fakes.openai_server import FakeOpenAIServer, serve_in_thread

if TYPE_CHECKING:
    # Imported lazily below: faster-whisper takes a moment to import and most tests never need it.
    from multimodal.transcribe import Transcriber


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


@pytest.fixture(scope="session")
def speech_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the bundled Whisper model is assembled, once per test session."""
    return tmp_path_factory.mktemp("speech-cache")


@pytest.fixture(scope="session")
def transcriber(speech_cache_dir: Path) -> Iterator[Transcriber]:
    """One Transcriber with the real Whisper base model, shared by the speech tests."""
    from multimodal.audio_settings import AudioSettings
    from multimodal.transcribe import Transcriber

    service = Transcriber(AudioSettings(cache_dir=speech_cache_dir))
    service.start()
    yield service
    service.close()
