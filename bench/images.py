"""Benchmark: Parley's image pipeline against the naive Pillow recipe, on large inputs.

Usage: .venv/bin/python bench/images.py [--repeat 5] [--side 1568]

Generates a 24-megapixel JPEG (6000x4000) and a 6000x4000 PNG with photo-like
content (gradients plus noise, so the files compress like photos), then
prepares each one in a fresh subprocess per (case, recipe):

- parley: `multimodal.images.prepare_image` with `max_side`;
- naive:  Image.open -> convert("RGB") -> thumbnail((side, side)) -> save JPEG.

Time is the median of `--repeat` runs, as wall time and as CPU time of the
process (CPU time moves less when other work shares the machine). Memory is
the peak resident set (VmHWM) of the subprocess minus its resident set before
the first run, so the interpreter and the input bytes do not count.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="Runs per case; the median time is reported.")
    parser.add_argument("--side", type=int, default=1568, help="Long side in pixels of the output (the model default).")
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

if __name__ == "__main__":
    main()
