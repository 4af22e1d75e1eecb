"""POST /v1/audio/transcriptions through the official openai SDK against Parley served by uvicorn."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from multimodal.transcript_text import to_simplified
from tests.gateway_setup import SCRIPTED_BACKEND, Gateway, run_gateway
from tests.speech_support import EN_JFK, REFERENCES, ZH_CLIP, char_error_rate, word_error_rate, write_wav
from config import parse_config

pytestmark = pytest.mark.slow


def _config(speech_cache_dir: Path, **audio: Any) -> Any:
    raw = {"backends": [SCRIPTED_BACKEND], "audio": {"cache_dir": str(speech_cache_dir), **audio}}
    return parse_config(raw, source="test config", env={})


@pytest.fixture
async def gateway(speech_cache_dir: Path) -> AsyncIterator[Gateway]:
    async with run_gateway(_config(speech_cache_dir)) as served:
        yield served


@pytest.fixture
def client(gateway: Gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.v1, api_key="unused", max_retries=0, timeout=300)


async def test_json_transcript_of_english_clip(client: openai.AsyncOpenAI) -> None:
    with open(EN_JFK, "rb") as file:
        result = await client.audio.transcriptions.create(model="whisper-1", file=file, language="en")

    assert word_error_rate(REFERENCES[EN_JFK], result.text) <= 0.1


async def test_mandarin_clip_in_simplified_characters(client: openai.AsyncOpenAI) -> None:
    result = await client.audio.transcriptions.create(
        model="whisper-1", file=("clip.wav", ZH_CLIP.read_bytes(), "audio/wav"), language="zh"
    )

    assert to_simplified(result.text) == result.text
    assert char_error_rate(REFERENCES[ZH_CLIP], result.text) <= 0.2


async def test_text_format_is_plain_text(client: openai.AsyncOpenAI) -> None:
    text = await client.audio.transcriptions.create(
        model="whisper-1", file=EN_JFK.open("rb"), language="en", response_format="text"
    )

    assert isinstance(text, str)
    assert word_error_rate(REFERENCES[EN_JFK], text) <= 0.1


async def test_verbose_json_has_segments_and_language(client: openai.AsyncOpenAI) -> None:
    result = await client.audio.transcriptions.create(
        model="whisper-1", file=EN_JFK.open("rb"), response_format="verbose_json"
    )

    assert result.language == "en"
    assert result.duration == pytest.approx(11.0, abs=0.05)
    assert result.segments
    assert result.segments[0].start < result.segments[-1].end <= 11.1
    assert word_error_rate(REFERENCES[EN_JFK], result.text) <= 0.1


@pytest.mark.parametrize("response_format", ["srt", "vtt"])
async def test_subtitle_formats(client: openai.AsyncOpenAI, response_format: str) -> None:
    subtitles = await client.audio.transcriptions.create(
        model="whisper-1", file=EN_JFK.open("rb"), language="en", response_format=response_format  # type: ignore[call-overload]
    )

    lines = str(subtitles).splitlines()
    if response_format == "srt":
        assert lines[0] == "1"
        assert lines[1].startswith("00:00:0")
        assert " --> " in lines[1]
        assert "," in lines[1]
    else:
        assert lines[0] == "WEBVTT"
        assert " --> " in lines[2]
        assert "." in lines[2]
    assert "fellow Americans" in str(subtitles)


async def test_empty_file_is_bad_request(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.audio.transcriptions.create(model="whisper-1", file=("empty.wav", b"", "audio/wav"))

    error = caught.value.body
    assert isinstance(error, dict)
    assert error["code"] == "audio_empty"
    assert error["param"] == "file"


async def test_noise_is_no_speech_error(client: openai.AsyncOpenAI, tmp_path: Path) -> None:
    noise = write_wav(tmp_path / "noise.wav", np.random.default_rng(5).normal(0, 0.2, 16_000 * 4).astype(np.float32))

    with pytest.raises(openai.UnprocessableEntityError) as caught:
        await client.audio.transcriptions.create(model="whisper-1", file=noise.open("rb"), language="en")
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "no_speech"


async def test_unknown_model_is_not_found(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await client.audio.transcriptions.create(model="gpt-4o-transcribe", file=EN_JFK.open("rb"))
    assert "whisper-1" in caught.value.message


async def test_unsupported_format_is_bad_request(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.audio.transcriptions.create(
            model="whisper-1", file=EN_JFK.open("rb"), response_format="diarized_json"  # type: ignore[arg-type]
        )
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["param"] == "response_format"


async def test_missing_file_gets_openai_error_shape(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.v1) as http:
        response = await http.post("/audio/transcriptions", data={"model": "whisper-1"})

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "file"
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_upload_over_limit_is_rejected(speech_cache_dir: Path) -> None:
    async with run_gateway(_config(speech_cache_dir, max_upload_mb=0.1)) as small:
        client = openai.AsyncOpenAI(base_url=small.v1, api_key="unused", max_retries=0)
        with pytest.raises(openai.APIStatusError) as caught:
            await client.audio.transcriptions.create(model="whisper-1", file=EN_JFK.open("rb"))

    assert caught.value.status_code == 413
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "audio_file_too_large"
    assert "audio.max_upload_mb" in caught.value.message


async def test_unknown_language_names_its_param(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.audio.transcriptions.create(model="whisper-1", file=EN_JFK.open("rb"), language="xx-klingon")

    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "unsupported_language"
    assert caught.value.body["param"] == "language"
