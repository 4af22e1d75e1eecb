"""Decoding real recordings in the forms browsers and phones produce, and rejecting broken ones."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from multimodal.audio import SAMPLE_RATE, decode_audio
from multimodal.speech_errors import AudioCorruptError, AudioEmptyError, AudioTooLongError, AudioTruncatedError
from tests.speech_support import EN_JFK, EN_LIBRISPEECH, FFMPEG, ZH_CLIP, ffmpeg


@pytest.fixture(scope="module")
def encoded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The JFK clip (11 s, 44.1 kHz stereo FLAC) re-encoded as browsers and phones send it."""
    folder = tmp_path_factory.mktemp("encoded")
    variants = {
        "wav48": ("wav48.wav", ["-ar", "48000", "-ac", "2"]),
        "webm": ("clip.webm", ["-c:a", "libopus", "-b:a", "32k"]),
        "ogg": ("clip.ogg", ["-c:a", "libvorbis"]),
        "mp3": ("clip.mp3", ["-c:a", "libmp3lame"]),
        "m4a": ("clip.m4a", ["-c:a", "aac"]),
        "wav8k": ("clip8k.wav", ["-ar", "8000", "-ac", "2"]),
    }
    paths: dict[str, Path] = {}
    for key, (name, options) in variants.items():
        paths[key] = folder / name
        ffmpeg("-i", str(EN_JFK), *options, str(paths[key]))

    # MediaRecorder writes WebM to a stream, so the header states no duration.
    streamed = folder / "streamed.webm"
    with open(streamed, "wb") as out:
        subprocess.run(
            [FFMPEG, "-loglevel", "error", "-i", str(EN_JFK), "-c:a", "libopus", "-f", "webm", "pipe:1"],
            stdout=out,
            check=True,
        )
    paths["streamed_webm"] = streamed
    return paths


@pytest.mark.parametrize("variant", ["wav48", "webm", "ogg", "mp3", "m4a", "wav8k", "streamed_webm"])
def test_decode_gives_16k_mono_float(encoded: dict[str, Path], variant: str) -> None:
    decoded = decode_audio(encoded[variant], max_seconds=120)

    assert decoded.samples.dtype == np.float32
    assert decoded.samples.ndim == 1
    assert decoded.duration == pytest.approx(11.0, abs=0.1)
    assert 0.05 < float(np.abs(decoded.samples).max()) <= 1.0


def test_decode_reports_source_format(encoded: dict[str, Path]) -> None:
    decoded = decode_audio(encoded["wav8k"], max_seconds=120)

    assert decoded.source_rate == 8000
    assert decoded.source_channels == 2
    assert decoded.container == "wav"


def test_streamed_webm_has_no_stated_duration(encoded: dict[str, Path]) -> None:
    decoded = decode_audio(encoded["streamed_webm"], max_seconds=120)

    assert decoded.stated_duration is None
    assert decoded.codec == "opus"


@pytest.mark.parametrize("clip", [ZH_CLIP, EN_LIBRISPEECH, EN_JFK])
def test_decode_from_bytes_matches_path(clip: Path) -> None:
    from_path = decode_audio(clip, max_seconds=120)
    from_bytes = decode_audio(clip.read_bytes(), max_seconds=120)

    assert np.array_equal(from_path.samples, from_bytes.samples)


def test_zero_byte_file_is_empty(tmp_path: Path) -> None:
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")

    with pytest.raises(AudioEmptyError) as caught:
        decode_audio(empty, max_seconds=120)
    assert caught.value.code == "audio_empty"

    with pytest.raises(AudioEmptyError):
        decode_audio(b"", max_seconds=120)


def test_random_bytes_are_corrupt(tmp_path: Path) -> None:
    junk = tmp_path / "junk.m4a"
    junk.write_bytes(np.random.default_rng(7).bytes(4000))

    with pytest.raises(AudioCorruptError) as caught:
        decode_audio(junk, max_seconds=120)
    assert caught.value.code == "audio_corrupt"
    assert caught.value.params["reason"]


def test_header_without_audio_is_empty(tmp_path: Path) -> None:
    # A WAV header whose data chunk holds no samples, as a recorder stopped at once writes.
    header_only = tmp_path / "header.wav"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "0", str(header_only))

    with pytest.raises(AudioEmptyError):
        decode_audio(header_only, max_seconds=120)


def test_truncated_wav_is_rejected(encoded: dict[str, Path], tmp_path: Path) -> None:
    cut = tmp_path / "cut.wav"
    cut.write_bytes(encoded["wav48"].read_bytes()[:200_000])

    with pytest.raises(AudioTruncatedError) as caught:
        decode_audio(cut, max_seconds=120)
    assert caught.value.params["stated_s"] == "11.0"
    assert caught.value.params["decoded_s"] == "1.0"


@pytest.mark.parametrize("variant", ["webm", "mp3"])
def test_truncated_compressed_file_is_rejected(encoded: dict[str, Path], tmp_path: Path, variant: str) -> None:
    source = encoded[variant]
    cut = tmp_path / f"cut{source.suffix}"
    data = source.read_bytes()
    cut.write_bytes(data[: len(data) // 3])

    with pytest.raises(AudioTruncatedError):
        decode_audio(cut, max_seconds=120)


def test_recording_over_limit_is_rejected_from_header() -> None:
    with pytest.raises(AudioTooLongError) as caught:
        decode_audio(EN_LIBRISPEECH, max_seconds=5)
    assert caught.value.params == {"seconds": "9", "limit_s": "5"}
    assert caught.value.http_status == 413


def test_streamed_webm_over_limit_is_rejected_while_decoding(encoded: dict[str, Path]) -> None:
    with pytest.raises(AudioTooLongError) as caught:
        decode_audio(encoded["streamed_webm"], max_seconds=5)
    assert caught.value.params["limit_s"] == "5"
