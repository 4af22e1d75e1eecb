"""A fixed seed repeats the local model's reply whatever request ran before it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from backends.llama_cpp import LlamaCppBackend
from backends.registry import BackendContext, create_backend, settings_class
from backends.types import ChatRequest, Message, SamplingParams, TextDelta

pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.slow


@pytest.fixture
async def backend() -> AsyncIterator[LlamaCppBackend]:
    with ThreadPoolExecutor(max_workers=4) as executor:
        settings = settings_class("llama_cpp").model_validate({"name": "local", "kind": "llama_cpp", "n_ctx": 512})
        created = create_backend(settings, BackendContext(executor=executor))
        assert isinstance(created, LlamaCppBackend)
        yield created
        await created.aclose()


async def reply(backend: LlamaCppBackend, text: str, seed: int | None) -> str:
    request = ChatRequest(
        messages=(Message.text("user", text),),
        model="smollm2",
        params=SamplingParams(temperature=0.7, top_p=0.9, max_tokens=60, seed=seed),
    )
    return "".join([event.text async for event in backend.stream(request) if isinstance(event, TextDelta)])


async def test_seeded_replies_match_across_cache_reuse(backend: LlamaCppBackend) -> None:
    # Four requests at once, as the Compare tab sends them: the first decodes the whole prompt and the
    # others would find it cached.
    first = await asyncio.gather(*(reply(backend, "Tell me about the moon.", seed=0) for _ in range(4)))
    await reply(backend, "Name three colours of the rainbow.", seed=None)
    after_other = await reply(backend, "Tell me about the moon.", seed=0)

    assert first[0].strip()
    assert first[1] == first[0]
    assert first[2] == first[0]
    assert first[3] == first[0]
    assert after_other == first[0]
