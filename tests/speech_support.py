"""Real recordings, their reference transcripts, error rates and ffmpeg re-encodes for the speech tests."""

from __future__ import annotations

import re
import subprocess
import unicodedata
from pathlib import Path

import numpy as np

from multimodal.transcript_text import to_simplified

# The test recordings live beside the repository, never inside it.
AUDIO_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "testdata" / "audio"
ZH_CLIP = AUDIO_DIR / "zh-aishell-BAC009S0724W0121.wav"
EN_LIBRISPEECH = AUDIO_DIR / "en-librispeech-1995-1837-0001.wav"
EN_JFK = AUDIO_DIR / "en-jfk.flac"

REFERENCES: dict[Path, str] = {
    ZH_CLIP: "广州市房地产中介协会分析",
    EN_LIBRISPEECH: (
        "it was the first great sorrow of his life it was not so much the loss of the cotton itself "
        "but the fantasy the hopes the dreams built around it"
    ),
    EN_JFK: "and so my fellow americans ask not what your country can do for you ask what you can do for your country",
}

FFMPEG = "/usr/bin/ffmpeg"


def _edit_distance(reference: list[str], hypothesis: list[str]) -> int:
    previous = list(range(len(hypothesis) + 1))
    for i, ref_item in enumerate(reference, start=1):
        current = [i] + [0] * len(hypothesis)
        for j, hyp_item in enumerate(hypothesis, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_item != hyp_item))
        previous = current
    return previous[-1]


def normalize_words(text: str) -> list[str]:
    """Lowercase, drop punctuation and split on spaces, the usual WER normalization."""
    text = unicodedata.normalize("NFKC", text).lower().replace("'", "")
    return re.sub(r"[^\w\s]", " ", text).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    ref = normalize_words(reference)
    return _edit_distance(ref, normalize_words(hypothesis)) / len(ref)


def char_error_rate(reference: str, hypothesis: str) -> float:
    """CER over Chinese characters, punctuation and spaces removed, both sides in Simplified script."""

    def chars(text: str) -> list[str]:
        return [char for char in to_simplified(text) if char.isalnum()]

    ref = chars(reference)
    return _edit_distance(ref, chars(hypothesis)) / len(ref)


def error_rate(clip: Path, hypothesis: str) -> float:
    """CER for the Mandarin clip, WER for the English ones."""
    reference = REFERENCES[clip]
    return char_error_rate(reference, hypothesis) if clip == ZH_CLIP else word_error_rate(reference, hypothesis)


def ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def write_wav(path: Path, samples: np.ndarray, rate: int = 16_000) -> Path:
    """Write mono float samples in [-1, 1] as 16-bit PCM WAV through ffmpeg."""
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    subprocess.run(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-f", "s16le", "-ar", str(rate), "-ac", "1", "-i", "pipe:0", str(path)],
        input=pcm,
        check=True,
    )
    return path
