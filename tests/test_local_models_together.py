"""The local chat model (SmolLM2 through llama.cpp) and Whisper working at the same time in one process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from app import build_app
from backends.registry import BackendContext
from backends.types import ChatRequest, Event, Finished, Message, SamplingParams, TextDelta
from config import parse_config
from multimodal.transcribe import TranscribeOptions, Transcript
from tests.speech_support import EN_LIBRISPEECH, REFERENCES, word_error_rate

pytest.importorskip("llama_cpp")

# Long enough that the transcription starts and ends while SmolLM2 still generates.
GENERATED_TOKENS = 400


@pytest.mark.slow
async def test_transcription_during_local_generation(tmp_path: Path) -> None:
    raw = {
        "backends": [{"name": "local", "kind": "llama_cpp", "n_ctx": 1024}],
        "resilience": {"cache": {"enabled": False}},
        "audio": {"cache_dir": str(tmp_path / "speech-cache")},
    }
    app = build_app(parse_config(raw, source="test config", env={}), context=BackendContext(env={}), ui=False)
    router = app.state.parley_api.router
    transcriber = app.state.parley_transcriber
    chat = ChatRequest(
        messages=(Message.text("user", "Write a long story about a lighthouse keeper and the sea."),),
        model="smollm2",
        params=SamplingParams(temperature=0.8, max_tokens=GENERATED_TOKENS, seed=7),
    )
    generation_running = asyncio.Event()
    overlaps: list[bool] = []

    async def generate() -> list[Event]:
        events: list[Event] = []
        async for event in router.stream(chat):
            events.append(event)
            if isinstance(event, TextDelta):
                generation_running.set()
        return events

    async def transcribe() -> Transcript:
        await generation_running.wait()
        transcript: Transcript = await transcriber.transcribe(EN_LIBRISPEECH, TranscribeOptions(language="en"))
        overlaps.append(not generation_task.done())
        return transcript

    async with app.router.lifespan_context(app):
        generation_task = asyncio.create_task(generate())
        transcript, events = await asyncio.gather(transcribe(), generation_task)

    # The transcription ended while SmolLM2 was still generating, so both ran at once.
    assert overlaps == [True]
    assert word_error_rate(REFERENCES[EN_LIBRISPEECH], transcript.text) <= 0.1
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert finished.reason in ("stop", "length")
    assert finished.backend == "local"
    assert finished.model == "smollm2"
    assert "".join(event.text for event in events if isinstance(event, TextDelta)).strip() != ""
