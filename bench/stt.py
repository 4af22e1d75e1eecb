"""Speech-to-text speed and accuracy: Parley's Transcriber against faster-whisper's default call.

    .venv/bin/python bench/stt.py [--runs 3]

Both sides use the same bundled Whisper base model (int8 on CPU, the same
thread count). The anchor is `WhisperModel.transcribe(path)` with
faster-whisper's defaults: beam 5, automatic language detection, no VAD,
full 30 s encoder windows. Parley runs as the app does: greedy decoding,
the known language, VAD, trimmed encoder padding. Times are the median of
`--runs` warm runs and include decoding the file. Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faster_whisper import WhisperModel  # noqa: E402

from multimodal.audio_settings import AudioSettings  # noqa: E402
from multimodal.transcribe import TranscribeOptions, Transcriber, model_spec  # noqa: E402
from multimodal.whisper_model import assemble_bundled_model  # noqa: E402
from tests.speech_support import EN_JFK, EN_LIBRISPEECH, FFMPEG, ZH_CLIP, error_rate  # noqa: E402


def _median_seconds(runs: int, work: object) -> tuple[float, str]:
    assert callable(work)
    times: list[float] = []
    text = ""
    for _ in range(runs):
        started = time.perf_counter()
        text = work()
        times.append(time.perf_counter() - started)
    return statistics.median(times), text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="Warm runs per clip and side; the median is reported.")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]

    with tempfile.TemporaryDirectory(prefix="parley-stt-bench-") as scratch:
        cache = Path(scratch) / "cache"

        # Model: a cold assembly into an empty cache, then a start that reuses it.
        started = time.perf_counter()
        model_dir = assemble_bundled_model(cache)
        assemble_cold = time.perf_counter() - started
        started = time.perf_counter()
        assemble_bundled_model(cache)
        assemble_reuse = time.perf_counter() - started

        settings = AudioSettings(cache_dir=cache)
        spec = model_spec(settings)
        transcriber = Transcriber(settings)
        started = time.perf_counter()
        loaded = transcriber.model.get()
        load_total = time.perf_counter() - started
        anchor = WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=spec.cpu_threads, local_files_only=True)

        webm = Path(scratch) / "en-jfk.webm"
        subprocess.run([FFMPEG, "-loglevel", "error", "-i", str(EN_JFK), "-c:a", "libopus", str(webm)], check=True)
        clips = [(ZH_CLIP, "zh", ZH_CLIP), (EN_LIBRISPEECH, "en", EN_LIBRISPEECH), (EN_JFK, "en", EN_JFK), (webm, "en", EN_JFK)]

        loop = asyncio.new_event_loop()
        rows = []
        for path, language, reference in clips:

            def parley() -> str:
                return loop.run_until_complete(transcriber.transcribe(path, TranscribeOptions(language=language))).text

            def parley_auto() -> str:
                return loop.run_until_complete(transcriber.transcribe(path, TranscribeOptions(language=None))).text

            def default_call() -> str:
                segments, _ = anchor.transcribe(str(path))
                return "".join(segment.text for segment in segments).strip()

            duration = loop.run_until_complete(transcriber.transcribe(path, TranscribeOptions(language=language))).duration
            default_call()  # warm-up of the anchor model
            parley_s, parley_text = _median_seconds(args.runs, parley)
            auto_s, _ = _median_seconds(args.runs, parley_auto)
            default_s, default_text = _median_seconds(args.runs, default_call)
            rows.append((path.name, duration, parley_s, auto_s, default_s, parley_text, default_text, reference))
        transcriber.close()
        loop.close()

    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"Machine: {os.cpu_count()} CPUs, load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after.")
    print(
        f"Model: Whisper base {loaded.compute_type} on {loaded.device}, {spec.cpu_threads} threads. "
        f"Assembly into an empty cache {assemble_cold:.2f} s, reuse check {assemble_reuse:.2f} s, "
        f"load {load_total:.2f} s. Peak RSS of the process (both models loaded) {peak_rss_mb:.0f} MB.\n"
    )
    print("| clip | audio s | Parley s (RTF) | Parley auto-language s | faster-whisper default s (RTF) | Parley / default | Parley transcript (error) | default transcript (error) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, duration, parley_s, auto_s, default_s, parley_text, default_text, reference in rows:
        metric = "CER" if reference == ZH_CLIP else "WER"
        print(
            f"| {name} | {duration:.1f} | {parley_s:.2f} ({parley_s / duration:.3f}) | {auto_s:.2f} | "
            f"{default_s:.2f} ({default_s / duration:.3f}) | {parley_s / default_s:.2f} | "
            f"{parley_text} ({metric} {error_rate(reference, parley_text):.0%}) | "
            f"{default_text} ({metric} {error_rate(reference, default_text):.0%}) |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
