"""The speech-to-text service shared by the UI and the HTTP API.

A `Transcriber` owns the one Whisper model of the process and a bounded
thread pool. Each request decodes the recording, runs faster-whisper with
settings tuned for short spoken prompts (greedy decoding, known language,
VAD, no timestamps), stops consuming segments once a time budget tied to the
audio length is spent, removes known hallucinations and decoder loops, and
writes Chinese in Simplified characters. Callers that want to show progress
iterate `transcribe_stream()`; others await `transcribe()`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from faster_whisper import WhisperModel
from faster_whisper.tokenizer import _LANGUAGE_CODES
from faster_whisper.transcribe import Segment

from multimodal.audio import AudioSource, DecodedAudio, decode_audio
from multimodal.audio_settings import AudioSettings
from multimodal.speech_errors import NoSpeechError, TranscriptionQueueFullError, UnsupportedLanguageError
from multimodal.transcript_text import collapse_repetitions, join_cjk, remove_hallucinations, to_simplified
from multimodal.whisper_model import ModelSpec, default_cache_dir, shared_model

logger = logging.getLogger(__name__)

# When greedy decoding fails Whisper's checks (a compression ratio over 2.4,
# which a decoder loop produces), faster-whisper decodes again at each higher
# temperature with `best_of` samples. Its defaults, 6 temperatures x 5
# samples, cost up to 26 decodes of a window; these cost at most 5, and
# collapse_repetitions() removes a loop that survives.
FALLBACK_TEMPERATURES = (0.0, 0.4, 0.8)
FALLBACK_BEST_OF = 2

# Seconds a stopping app waits for a Whisper load in progress. The base model
# loaded in 1.1 s in a test run on 2 CPU cores, so only a hung load hits this.
LOAD_WAIT_SECONDS = 60.0

# Languages whose text is written without spaces between words.
UNSPACED_LANGUAGES = frozenset({"zh", "yue", "ja", "th", "lo", "my", "bo"})


@dataclass(frozen=True, slots=True)
class TranscribeOptions:
    """Options of one transcription request.

    language: a Whisper language code ("zh", "en", ...); None detects it.
    prompt: text that steers spelling and style (Whisper's initial prompt).
    timestamps: decode segment timestamps (needed for srt, vtt, verbose_json);
        slower, so off for chat prompts.
    """

    language: str | None = None
    prompt: str | None = None
    timestamps: bool = False
    temperature: float | None = None


@dataclass(frozen=True, slots=True)
class TranscriptSegment:
    start: float
    end: float
    text: str
    tokens: tuple[int, ...] = ()
    temperature: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    no_speech_prob: float = 0.0


@dataclass(frozen=True, slots=True)
class Transcript:
    """The cleaned text of one recording and how it was produced.

    `stopped_early` is true when the time budget ran out and later segments
    were not transcribed; `removed` lists the hallucinated sentences dropped.
    """

    text: str
    language: str
    language_probability: float
    duration: float
    speech_duration: float
    processing_seconds: float
    segments: tuple[TranscriptSegment, ...]
    stopped_early: bool = False
    removed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TranscriptionStatus:
    """Progress of a queued request: `position` counts from 1 while `state` is "queued"."""

    state: Literal["queued", "loading", "transcribing"]
    position: int = 0


@dataclass(eq=False)
class _Job:
    state: Literal["queued", "loading", "transcribing"] = "queued"
    cancelled: bool = False
    queued_at: float = field(default_factory=time.monotonic)


def model_spec(settings: AudioSettings) -> ModelSpec:
    """Build the model spec, with workers and threads sized to this machine's cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = settings.workers or max(1, cores // 2)
    threads = settings.cpu_threads or max(1, cores // workers)
    return ModelSpec(
        model=settings.model,
        cache_dir=settings.cache_dir or default_cache_dir(),
        device=settings.device,
        compute_type=settings.compute_type,
        cpu_threads=threads,
        workers=workers,
        trim_padding=settings.trim_padding,
    )


def normalize_language(value: str | None) -> str | None:
    """Map a language tag such as "zh-CN", "EN" or "auto" to a Whisper code, or None for detection."""
    if value is None:
        return None
    tag = value.strip().lower().replace("_", "-")
    if tag in ("", "auto"):
        return None

    code = tag if tag in _LANGUAGE_CODES else tag.split("-")[0]
    if code not in _LANGUAGE_CODES:
        raise UnsupportedLanguageError(
            f"The language {value!r} is not one of the speech model's language codes",
            language=value,
            param="language",
        )
    return code


class Transcriber:
    """Speech-to-text for every user of the process, on a bounded pool of worker threads."""

    def __init__(self, settings: AudioSettings) -> None:
        self.settings = settings
        self.spec = model_spec(settings)
        self.model = shared_model(self.spec)
        self._pool = ThreadPoolExecutor(max_workers=self.spec.workers, thread_name_prefix="parley-stt")
        self._lock = threading.Lock()
        self._waiting: list[_Job] = []

    def start(self) -> None:
        """Begin loading the model in the background; returns at once."""
        self.model.start()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def aclose(self) -> None:
        """Close the pool, then wait for a model load in progress, so a stopping process does not abort in it."""
        self.close()

        if not await asyncio.to_thread(self.model.wait_for_load, LOAD_WAIT_SECONDS):
            logger.warning(
                "the speech model %r is still loading after %.0f s; the process exits when the load ends",
                self.spec.model,
                LOAD_WAIT_SECONDS,
            )

    @property
    def queue_length(self) -> int:
        with self._lock:
            return len(self._waiting)

    async def transcribe(self, source: AudioSource, options: TranscribeOptions | None = None) -> Transcript:
        """Transcribe one recording and return the cleaned transcript."""
        transcript: Transcript | None = None
        async for update in self.transcribe_stream(source, options):
            if isinstance(update, Transcript):
                transcript = update
        assert transcript is not None
        return transcript

    async def transcribe_stream(
        self, source: AudioSource, options: TranscribeOptions | None = None, *, poll_interval: float = 0.25
    ) -> AsyncIterator[TranscriptionStatus | Transcript]:
        """Yield a `TranscriptionStatus` whenever it changes, then the `Transcript`.

        Errors are raised from the iteration. Leaving the iteration early (a
        closed browser tab, a cancelled request) cancels a job still in the
        queue and stops a running one at its next segment.
        """
        options = options or TranscribeOptions()
        options = TranscribeOptions(
            language=normalize_language(options.language),
            prompt=options.prompt or None,
            timestamps=options.timestamps,
            temperature=options.temperature,
        )
        job = self._enqueue()
        try:
            future = self._pool.submit(self._run, job, source, options)
        except RuntimeError:
            # The pool is shut down (the app is stopping); do not leave the job counted as waiting.
            with self._lock:
                self._waiting.remove(job)
            raise
        wrapped = asyncio.wrap_future(future)

        last: TranscriptionStatus | None = None
        try:
            while not wrapped.done():
                status = self._status(job)
                if status != last:
                    yield status
                    last = status
                await asyncio.wait({wrapped}, timeout=poll_interval)
            transcript = wrapped.result()
            # _run returns None only for a job cancelled by this generator's own exit.
            assert transcript is not None
            yield transcript
        finally:
            if not future.done():
                job.cancelled = True
                future.add_done_callback(_consume_exception)
            with self._lock:
                if job in self._waiting:
                    self._waiting.remove(job)

    def _enqueue(self) -> _Job:
        job = _Job()
        with self._lock:
            if len(self._waiting) >= self.settings.max_queue:
                raise TranscriptionQueueFullError(
                    f"{len(self._waiting)} transcriptions are already waiting, the limit of audio.max_queue",
                    waiting=len(self._waiting),
                )
            self._waiting.append(job)
        return job

    def _status(self, job: _Job) -> TranscriptionStatus:
        with self._lock:
            if job in self._waiting:
                return TranscriptionStatus("queued", self._waiting.index(job) + 1)
        return TranscriptionStatus(job.state)

    def _run(self, job: _Job, source: AudioSource, options: TranscribeOptions) -> Transcript | None:
        """Worker thread: decode, transcribe and clean one recording."""
        with self._lock:
            if job in self._waiting:
                self._waiting.remove(job)
            job.state = "transcribing"
        if job.cancelled:
            return None
        started = time.perf_counter()

        # Decode first: a bad file is rejected at once, even while the model loads.
        audio = decode_audio(source, max_seconds=self.settings.max_seconds)

        if self.model.state != "ready":
            job.state = "loading"
        loaded = self.model.get(timeout=self.settings.load_timeout_s)
        job.state = "transcribing"

        transcript = self._transcribe_decoded(loaded.model, audio, options, job, started)
        logger.info(
            "transcribed %.1f s of %s audio (%s, %.0f%%) in %.2f s: %d characters%s",
            transcript.duration,
            audio.container,
            transcript.language,
            transcript.language_probability * 100,
            transcript.processing_seconds,
            len(transcript.text),
            ", stopped early" if transcript.stopped_early else "",
        )
        return transcript

    def _transcribe_decoded(
        self, model: WhisperModel, audio: DecodedAudio, options: TranscribeOptions, job: _Job, started: float
    ) -> Transcript:
        settings = self.settings
        segments_iter, info = model.transcribe(
            audio.samples,
            language=options.language,
            beam_size=settings.beam_size,
            temperature=[options.temperature] if options.temperature is not None else list(FALLBACK_TEMPERATURES),
            best_of=FALLBACK_BEST_OF,
            vad_filter=True,
            vad_parameters={
                "threshold": settings.vad_threshold,
                "min_silence_duration_ms": settings.vad_min_silence_ms,
                "speech_pad_ms": settings.vad_speech_pad_ms,
            },
            without_timestamps=not options.timestamps,
            condition_on_previous_text=False,
            initial_prompt=options.prompt,
            max_new_tokens=_max_new_tokens(audio.duration),
        )

        # The budget is checked between segments: faster-whisper decodes one
        # window of up to 30 s per segment and cannot be interrupted inside it.
        # For a short prompt max_new_tokens bounds that single window instead.
        budget = settings.budget_factor * audio.duration + settings.budget_base_s
        raw_segments: list[Segment] = []
        stopped_early = False
        for segment in segments_iter:
            raw_segments.append(segment)
            if job.cancelled:
                stopped_early = True
                break
            if time.perf_counter() - started > budget:
                stopped_early = True
                logger.warning(
                    "transcription of %.1f s of audio exceeded its %.0f s budget at %.1f s; keeping %d segments",
                    audio.duration,
                    budget,
                    segment.end,
                    len(raw_segments),
                )
                break

        language = info.language
        segments, removed = _clean_segments(raw_segments, language)
        separator = "" if language in UNSPACED_LANGUAGES else " "
        text = separator.join(segment.text for segment in segments).strip()
        if not text:
            raise NoSpeechError(
                f"No speech detected in {audio.duration:.1f} s of audio "
                f"({info.duration_after_vad:.1f} s passed voice activity detection)"
            )

        return Transcript(
            text=text,
            language=language,
            language_probability=float(info.language_probability),
            duration=audio.duration,
            speech_duration=float(info.duration_after_vad),
            processing_seconds=time.perf_counter() - started,
            segments=tuple(segments),
            stopped_early=stopped_early,
            removed=tuple(removed),
        )


def _max_new_tokens(duration: float) -> int | None:
    """Tokens a window may produce for a short recording, so a decoder loop ends early.

    12 tokens per second covers fast Mandarin speech, estimated at 6
    characters per second and up to 2 tokens per character. The cap stays under 448 (the decoder's
    length) minus the longest initial prompt faster-whisper keeps (223
    tokens) and the start sequence. Longer recordings keep the decoder's own limit.
    """
    if duration > 16:
        return None
    return int(12 * duration) + 24


def _clean_segments(raw_segments: list[Segment], language: str) -> tuple[list[TranscriptSegment], list[str]]:
    """Apply the text filters to each segment and drop the ones left empty or repeated."""
    cleaned: list[TranscriptSegment] = []
    removed: list[str] = []
    previous_text = None
    for raw in raw_segments:
        text = raw.text.strip()
        if language == "zh":
            # One script in the output: Whisper mixes Traditional and Simplified characters.
            text = to_simplified(text)
        if language in UNSPACED_LANGUAGES:
            text = join_cjk(text)
        text, dropped = remove_hallucinations(text)
        removed.extend(dropped)
        text = collapse_repetitions(text)

        # A window that repeats the previous one word for word is a decoder loop.
        if not text or text == previous_text:
            continue
        previous_text = text
        cleaned.append(
            TranscriptSegment(
                start=float(raw.start),
                end=float(raw.end),
                text=text,
                tokens=tuple(raw.tokens),
                temperature=float(raw.temperature or 0.0),
                avg_logprob=float(raw.avg_logprob),
                compression_ratio=float(raw.compression_ratio),
                no_speech_prob=float(raw.no_speech_prob),
            )
        )
    if removed:
        logger.info("removed %d hallucinated sentences: %r", len(removed), removed)
    return cleaned, removed


def _consume_exception(future: Future[Transcript | None]) -> None:
    # The caller left before the job finished; read its error so it is not reported as unhandled.
    if not future.cancelled():
        future.exception()
