"""The Voice tab end to end: the whole app on 127.0.0.1 with the real model, driven through gradio_client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from multimodal.transcript_text import to_simplified
from tests.speech_support import EN_JFK, REFERENCES, ZH_CLIP, char_error_rate, word_error_rate, write_wav
from tests.ui_support import scripted_config, serve_parley

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def voice_app(speech_cache_dir: Path) -> Iterator[str]:
    raw: dict[str, Any] = {**scripted_config(), "audio": {"cache_dir": str(speech_cache_dir)}}
    with serve_parley(raw) as url:
        yield url


def test_page_language_picks_chinese(voice_app: str) -> None:
    client = Client(voice_app + "/", verbose=False, headers={"Accept-Language": "zh-CN,zh;q=0.9"})

    status, transcript, _ = client.predict(handle_file(str(ZH_CLIP)), "ui", api_name="/transcribe")

    assert status.startswith("语言：zh（已指定，未检测）")
    assert to_simplified(transcript) == transcript
    assert char_error_rate(REFERENCES[ZH_CLIP], transcript) <= 0.2


def test_english_page_transcribes_english(voice_app: str) -> None:
    client = Client(voice_app + "/", verbose=False, headers={"Accept-Language": "en-US"})

    status, transcript, _ = client.predict(handle_file(str(EN_JFK)), "ui", api_name="/transcribe")

    assert status.startswith("Language: en (set, not detected)")
    assert "%" not in status
    assert word_error_rate(REFERENCES[EN_JFK], transcript) <= 0.1


def test_automatic_language_on_english_page(voice_app: str) -> None:
    client = Client(voice_app + "/", verbose=False, headers={"Accept-Language": "en-US"})

    status, transcript, _ = client.predict(handle_file(str(ZH_CLIP)), "auto", api_name="/transcribe")

    assert status.startswith("Language: zh (")
    assert "%)" in status
    assert char_error_rate(REFERENCES[ZH_CLIP], transcript) <= 0.2


def test_noise_shows_translated_no_speech_error(voice_app: str, tmp_path: Path) -> None:
    noise = write_wav(tmp_path / "noise.wav", np.random.default_rng(11).normal(0, 0.2, 16_000 * 3).astype(np.float32))
    client = Client(voice_app + "/", verbose=False, headers={"Accept-Language": "zh-CN"})

    with pytest.raises(AppError) as caught:
        client.predict(handle_file(str(noise)), "ui", api_name="/transcribe")
    assert "没有检测到语音" in str(caught.value)


def test_failed_transcription_clears_old_transcript(voice_app: str, tmp_path: Path) -> None:
    noise = write_wav(tmp_path / "noise.wav", np.random.default_rng(12).normal(0, 0.2, 16_000 * 3).astype(np.float32))
    client = Client(voice_app + "/", verbose=False, headers={"Accept-Language": "zh-CN"})
    _, transcript, _ = client.predict(handle_file(str(ZH_CLIP)), "ui", api_name="/transcribe")
    assert transcript

    job = client.submit(handle_file(str(noise)), "ui", api_name="/transcribe")
    with pytest.raises(AppError):
        job.result()

    status, transcript, _ = job.outputs()[-1]
    assert transcript == ""
    assert "没有检测到语音" in status
