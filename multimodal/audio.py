"""Decode any recording a browser or phone produces into 16 kHz mono float32.

PyAV (FFmpeg) reads WAV at any rate, WebM/Opus, Ogg, MP3, M4A/AAC and FLAC,
mono or stereo; one resampler turns every input into the format Whisper
expects. Empty, corrupt, cut-off and over-long recordings are rejected here
with the errors of `multimodal.speech_errors`.
"""

from __future__ import annotations

import io
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import av
import numpy as np
import numpy.typing as npt

from multimodal.speech_errors import AudioCorruptError, AudioEmptyError, AudioTooLongError, AudioTruncatedError

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16_000

# A decoded length this much shorter than the container's stated duration means
# the file was cut off. MP3 without a Xing header states an estimate from the
# bit rate, hence a relative tolerance and not an exact match.
TRUNCATION_TOLERANCE = 0.2
TRUNCATION_MIN_GAP_S = 0.5

AudioSource = str | os.PathLike[str] | bytes | BinaryIO


@dataclass(frozen=True, slots=True)
class DecodedAudio:
    """A recording resampled for Whisper, with its source rate, channels, codec, container and stated duration."""

    samples: npt.NDArray[np.float32]
    source_rate: int
    source_channels: int
    codec: str
    container: str
    stated_duration: float | None

    @property
    def duration(self) -> float:
        """Decoded length in seconds."""
        return len(self.samples) / SAMPLE_RATE


def decode_audio(source: AudioSource, *, max_seconds: float) -> DecodedAudio:
    """Decode `source` (a path, bytes or a binary file) to 16 kHz mono float32.

    Raises:
        AudioEmptyError: the file has no bytes or no audio frames.
        AudioCorruptError: FFmpeg cannot read it, or it has no audio stream.
        AudioTruncatedError: far less audio decodes than the container states.
        AudioTooLongError: the audio is longer than `max_seconds`; decoding
            stops at the limit, so a long file costs little.
    """
    _reject_empty(source)
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    wav_duration = _wav_data_duration(source)

    try:
        with av.open(source, mode="r", metadata_errors="ignore") as container:
            return _decode_container(container, max_seconds, wav_duration)
    except av.FFmpegError as exc:
        raise AudioCorruptError(
            f"FFmpeg could not read the recording: {_ffmpeg_reason(exc)}", reason=_ffmpeg_reason(exc)
        ) from exc


def _reject_empty(source: AudioSource) -> None:
    if isinstance(source, bytes):
        size = len(source)
    elif isinstance(source, (str, os.PathLike)):
        size = Path(source).stat().st_size
    else:
        return

    if size == 0:
        raise AudioEmptyError("The recording has 0 bytes")


def _decode_container(
    container: av.container.InputContainer, max_seconds: float, wav_duration: float | None
) -> DecodedAudio:
    if not container.streams.audio:
        raise AudioCorruptError(
            f"The {container.format.name} file has no audio stream", reason="no audio stream"
        )
    stream = container.streams.audio[0]
    stated = wav_duration if wav_duration is not None else _stated_duration(container, stream)

    # Reject before decoding when the container already says the audio is too long.
    if stated is not None and stated > max_seconds + 0.5:
        raise _too_long(stated, max_seconds)

    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    max_samples = int((max_seconds + 0.5) * SAMPLE_RATE)
    chunks: list[npt.NDArray[Any]] = []
    decoded_samples = 0
    for frame in container.decode(stream):
        for resampled in resampler.resample(frame):
            chunk = resampled.to_ndarray().reshape(-1)
            chunks.append(chunk)
            decoded_samples += len(chunk)
        # Files without a stated duration (browser WebM) are bounded while decoding.
        if decoded_samples > max_samples:
            raise _too_long(None, max_seconds)
    for resampled in resampler.resample(None):
        chunks.append(resampled.to_ndarray().reshape(-1))

    if not chunks:
        raise AudioEmptyError(f"The {container.format.name} file contains no audio frames")
    # The resampler's filter overshoots on loud input; keep the [-1, 1] range Whisper expects.
    samples = np.clip(np.concatenate(chunks).astype(np.float32, copy=False), -1.0, 1.0)

    decoded = DecodedAudio(
        samples=samples,
        source_rate=stream.rate or 0,
        source_channels=stream.channels or 0,
        codec=stream.codec_context.name,
        container=container.format.name,
        stated_duration=stated,
    )
    _check_complete(decoded)
    logger.debug(
        "decoded %.2f s of %s/%s at %d Hz x%d (stated %s)",
        decoded.duration,
        decoded.container,
        decoded.codec,
        decoded.source_rate,
        decoded.source_channels,
        stated,
    )
    return decoded


def _stated_duration(container: av.container.InputContainer, stream: av.AudioStream) -> float | None:
    """The duration the container header states, or None where it states none (browser WebM)."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _wav_data_duration(source: str | os.PathLike[str] | BinaryIO) -> float | None:
    """The duration a WAV header's data chunk size states, or None for other formats.

    FFmpeg derives a WAV's duration from the file size when the data chunk is
    cut short, so a truncated WAV is only visible in the RIFF header itself.
    Streaming writers put 0 or 0xFFFFFFFF there; those state no duration.
    """
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as file:
            head = file.read(4096)
    else:
        position = source.tell()
        head = source.read(4096)
        source.seek(position)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None

    byte_rate = 0
    offset = 12
    while offset + 8 <= len(head):
        chunk_id = head[offset : offset + 4]
        (chunk_size,) = struct.unpack_from("<I", head, offset + 4)
        if chunk_id == b"fmt " and offset + 20 <= len(head):
            (byte_rate,) = struct.unpack_from("<I", head, offset + 16)
        if chunk_id == b"data":
            if byte_rate == 0 or chunk_size in (0, 0xFFFFFFFF):
                return None
            return chunk_size / byte_rate
        # RIFF chunks are padded to an even size.
        offset += 8 + chunk_size + (chunk_size & 1)
    return None


def _check_complete(decoded: DecodedAudio) -> None:
    stated = decoded.stated_duration
    if stated is None:
        return

    gap = stated - decoded.duration
    if gap > TRUNCATION_MIN_GAP_S and gap > stated * TRUNCATION_TOLERANCE:
        raise AudioTruncatedError(
            f"Only {decoded.duration:.1f} s of the {stated:.1f} s the {decoded.container} header states could be decoded",
            decoded_s=f"{decoded.duration:.1f}",
            stated_s=f"{stated:.1f}",
        )


def _too_long(stated: float | None, max_seconds: float) -> AudioTooLongError:
    seconds = f"{stated:.0f}" if stated is not None else f"> {max_seconds:.0f}"
    return AudioTooLongError(
        f"The recording is {seconds} s long, over the limit of {max_seconds:.0f} s (audio.max_seconds)",
        seconds=seconds,
        limit_s=f"{max_seconds:.0f}",
    )


def _ffmpeg_reason(exc: av.FFmpegError) -> str:
    # FFmpegError.strerror is FFmpeg's own sentence ("Invalid data found when processing input").
    return str(exc.strerror or exc).rstrip(".")
