"""Benchmark: Parley's image pipeline against the naive Pillow recipe, on large inputs.

Usage: .venv/bin/python bench/images.py [--repeat 5] [--side 1568] [--steps]

Generates a 24-megapixel JPEG (6000x4000) and a 6000x4000 PNG with photo-like
content (gradients plus noise, so the files compress like photos), then
prepares each one in a fresh subprocess per (case, recipe):

- parley: `multimodal.images.prepare_image` with `max_side`;
- naive:  Image.open -> convert("RGB") -> thumbnail((side, side)) -> save JPEG.

Time is the median of `--repeat` runs, as wall time and as CPU time of the
process (CPU time moves less when other work shares the machine). Memory is
the peak resident set (VmHWM) of the subprocess minus its resident set before
the first run, so the interpreter and the input bytes do not count.

`--steps` also times each step of both recipes on the JPEG in this process
(median CPU time), to show where the time goes.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

CASES = {
    "24 MP JPEG (6000x4000)": ("photo.jpg", "JPEG"),
    "6000x4000 PNG": ("photo.png", "PNG"),
}

# The measuring child: it imports only what its recipe needs, then reports JSON on stdout.
CHILD = r"""
import io, json, statistics, sys, time
sys.path.insert(0, sys.argv[4])
from PIL import Image

def status_kb(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0

recipe, path, side, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[5])
data = open(path, "rb").read()

if recipe == "parley":
    from multimodal.images import ImageLimits, prepare_image
    limits = ImageLimits(max_side=side, max_bytes=20 * 1024 * 1024, max_upload_bytes=len(data) + 1)
    def run():
        prepared = prepare_image(data, limits)
        return prepared.report.final_size, len(prepared.part.data)
else:
    def run():
        image = Image.open(io.BytesIO(data)).convert("RGB")
        image.thumbnail((side, side))
        out = io.BytesIO()
        image.save(out, "JPEG", quality=85)
        return image.size, len(out.getvalue())

baseline = status_kb("VmRSS")
wall, cpu = [], []
for index in range(repeat):
    started, started_cpu = time.perf_counter(), time.process_time()
    size, out_bytes = run()
    wall.append(time.perf_counter() - started)
    cpu.append(time.process_time() - started_cpu)
    if index == 0:
        # VmHWM is the peak since exec; read it before later runs reuse freed memory.
        peak = status_kb("VmHWM")
print(json.dumps({"seconds": statistics.median(wall), "cpu_seconds": statistics.median(cpu),
                  "peak_mb": (peak - baseline) / 1024, "size": list(size), "bytes": out_bytes}))
"""


def make_inputs(folder: Path) -> None:
    """Write the two inputs: gradients in each channel plus Gaussian noise, like a grainy photo."""
    from PIL import Image

    size = (6000, 4000)
    horizontal = Image.linear_gradient("L").resize(size)
    vertical = Image.linear_gradient("L").rotate(90).resize(size)
    noise = Image.effect_noise(size, 40)
    red = Image.blend(horizontal, noise, 0.3)
    green = Image.blend(vertical, noise, 0.3)
    blue = Image.blend(horizontal.transpose(Image.Transpose.FLIP_LEFT_RIGHT), noise, 0.3)
    photo = Image.merge("RGB", (red, green, blue))

    photo.save(folder / "photo.jpg", "JPEG", quality=90)
    photo.save(folder / "photo.png", "PNG")


def measure(recipe: str, path: Path, side: int, repeat: int) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, recipe, str(path), str(side), str(REPO), str(repeat)],
        capture_output=True,
        text=True,
        check=True,
    )
    measured: dict[str, Any] = json.loads(result.stdout)
    return measured


def median_cpu(step: Callable[[], object], repeat: int) -> float:
    """Run `step` `repeat` times; return the median CPU seconds of one run."""
    times = []
    for _ in range(repeat):
        started = time.process_time()
        step()
        times.append(time.process_time() - started)
    return statistics.median(times)


def print_steps(path: Path, side: int, repeat: int) -> None:
    """Time each step of the naive recipe and of Parley's on one JPEG, as median CPU seconds."""
    from PIL import Image

    data = path.read_bytes()
    width, height = Image.open(path).size

    def decode(scale: int) -> Image.Image:
        image = Image.open(io.BytesIO(data))
        image.draft(None, (width // scale, height // scale))
        image.load()
        return image

    def jpeg(image: Image.Image) -> int:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=85)
        return buffer.tell()

    full = decode(1)
    half = decode(2)
    quarter = decode(4)
    thumbnail = full.copy()
    thumbnail.thumbnail((side, side))
    steps = {
        "naive: decode at full size": lambda: decode(1),
        "naive: convert(\"RGB\") (a copy, as the JPEG is RGB already)": lambda: full.convert("RGB"),
        "naive: thumbnail (reduce + bicubic), on a fresh 24 MP copy": lambda: full.copy().thumbnail((side, side)),
        "naive: save JPEG q85": lambda: jpeg(thumbnail),
        "parley: count start-of-scan markers (skipped for a baseline JPEG like this)": lambda: data.count(b"\xff\xda"),
        "parley: decode at 1/2 scale": lambda: decode(2),
        "parley: decode at 1/4 scale (what it uses)": lambda: decode(4),
        "floor: decode at 1/8 scale (mostly Huffman decoding)": lambda: decode(8),
        "parley at 1/2 would add: Lanczos to the long side": lambda: half.resize(
            (side, round(half.height * side / half.width)), Image.Resampling.LANCZOS, reducing_gap=3.0
        ),
        "parley: save JPEG q85": lambda: jpeg(quarter),
    }
    print(f"\nsteps on the {width}x{height} JPEG, median CPU ms of {repeat} runs")
    print("| step | CPU ms |")
    print("|---|---|")
    for name, step in steps.items():
        print(f"| {name} | {median_cpu(step, repeat) * 1000:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="Runs per case; the median time is reported.")
    parser.add_argument("--side", type=int, default=1568, help="Long side in pixels of the output (the model default).")
    parser.add_argument("--steps", action="store_true", help="Also time each step of both recipes on the JPEG.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="parley-bench-images-") as folder_name:
        folder = Path(folder_name)
        make_inputs(folder)

        print(f"long side {args.side}, median of {args.repeat} runs, peak RSS above the pre-run baseline")
        columns = ("input", "recipe", "input MB", "wall s", "CPU s", "peak MB", "output", "CPU vs naive", "memory vs naive")
        print("| " + " | ".join(columns) + " |")
        print("|" + "|".join("---" for _ in columns) + "|")
        for case, (file_name, _) in CASES.items():
            path = folder / file_name
            input_mb = path.stat().st_size / 1024 / 1024
            naive = measure("naive", path, args.side, args.repeat)
            parley = measure("parley", path, args.side, args.repeat)
            for recipe, row in (("naive", naive), ("parley", parley)):
                width, height = row["size"]
                cells = (
                    case,
                    recipe,
                    f"{input_mb:.1f}",
                    f"{row['seconds']:.3f}",
                    f"{row['cpu_seconds']:.3f}",
                    f"{row['peak_mb']:.1f}",
                    f"{width}x{height}, {row['bytes'] // 1024} KB",
                    f"{row['cpu_seconds'] / naive['cpu_seconds']:.2f}",
                    f"{row['peak_mb'] / max(naive['peak_mb'], 0.1):.2f}",
                )
                print("| " + " | ".join(cells) + " |")

        if args.steps:
            print_steps(folder / CASES["24 MP JPEG (6000x4000)"][0], args.side, args.repeat)

if __name__ == "__main__":
    main()
