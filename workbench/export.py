"""Exports of compare runs (Markdown, JSON, CSV) and batch results (CSV, JSONL).

CSV files start with a UTF-8 byte order mark so Excel shows Chinese text
correctly, and text cells that a spreadsheet would run as a formula (they
start with =, +, -, @, tab or carriage return) get a leading apostrophe.
"""

from __future__ import annotations

import csv
import io
import json
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from workbench.batch import BatchRow
from workbench.compare import METRICS, CompareReport
from workbench.runner import RunResult

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

RUN_FIELDS = ("text", "reasoning", "ttft_s", "total_s", "tokens", "tokens_estimated", "tokens_per_s",
              "chars", "served_by", "cached", "finish_reason", "error", "error_code", "ignored_params")


def neutralise_formula(value: Any) -> Any:
    """Prefix text a spreadsheet would evaluate with an apostrophe; leave other values alone."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def _csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if value is None else neutralise_formula(value) for value in row])
    return "\ufeff" + buffer.getvalue()


def _run_dict(run: RunResult) -> dict[str, Any]:
    data = {name: getattr(run, name) for name in RUN_FIELDS}
    data["ignored_params"] = list(run.ignored_params)
    return data


def compare_to_dict(report: CompareReport) -> dict[str, Any]:
    panes = []
    for pane, spec in zip(report.panes, report.specs, strict=True):
        spreads = {metric: pane.spread(metric) for metric in METRICS}
        panes.append(
            {
                "label": pane.label,
                "model": pane.model,
                "params": spec.params.as_dict(),
                "system_prompt": spec.system_prompt,
                "runs": [_run_dict(run) for run in pane.runs],
                "spread": {metric: None if value is None else asdict(value) for metric, value in spreads.items()},
            }
        )
    return {
        "prompt": report.prompt,
        "started_at": report.started_at.isoformat(),
        "repeats": report.repeats,
        "panes": panes,
    }


def compare_to_json(report: CompareReport) -> str:
    return json.dumps(compare_to_dict(report), ensure_ascii=False, indent=2) + "\n"


def compare_to_csv(report: CompareReport) -> str:
    """One row per run of each pane."""
    header = ("pane", "model", "run", "params", *RUN_FIELDS)
    rows = []
    for pane, spec in zip(report.panes, report.specs, strict=True):
        params = json.dumps(spec.params.as_dict())
        for number, run in enumerate(pane.runs, start=1):
            values = _run_dict(run)
            values["ignored_params"] = " ".join(run.ignored_params)
            rows.append((pane.label, pane.model, number, params, *(values[name] for name in RUN_FIELDS)))
    return _csv(header, rows)


def _figure(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _markdown_cell(text: str) -> str:
    return re.sub(r"\s+", " ", text).replace("|", "\\|")


def compare_to_markdown(report: CompareReport) -> str:
    lines = [
        "# Compare run",
        "",
        f"Started {report.started_at.isoformat(timespec='seconds')}, {report.repeats} run(s) per pane.",
        "",
        "## Prompt",
        "",
        *(f"> {line}" for line in report.prompt.splitlines()),
        "",
        "## Figures (min / median / max)",
        "",
        "| pane | model | params | TTFT s | tokens/s | tokens | chars | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for pane, spec in zip(report.panes, report.specs, strict=True):
        cells = []
        for metric, digits in (("ttft_s", 3), ("tokens_per_s", 1), ("tokens", 0), ("chars", 0)):
            found = pane.spread(metric)
            cells.append(
                "–" if found is None else " / ".join(_figure(v, digits) for v in (found.minimum, found.median, found.maximum))
            )
        errors = sum(1 for run in pane.runs if not run.ok)
        params = ", ".join(f"{key}={value}" for key, value in spec.params.as_dict().items()) or "defaults"
        lines.append(
            f"| {_markdown_cell(pane.label)} | {_markdown_cell(pane.model)} | {_markdown_cell(params)} | "
            + " | ".join(cells)
            + f" | {errors} |"
        )

    for pane in report.panes:
        lines += ["", f"## {pane.label}", ""]
        latest = pane.latest
        if latest is None:
            lines.append("(no run finished)")
            continue
        if latest.error:
            lines.append(f"Error: {latest.error}")
        # A fence longer than any backtick run in the reply keeps the reply's own code blocks intact.
        longest = max((len(run) for run in re.findall(r"`+", latest.text)), default=0)
        fence = "`" * max(3, longest + 1)
        lines += [f"{fence}text", latest.text, fence]
    return "\n".join(lines) + "\n"


BATCH_FIELDS = tuple(BatchRow.__dataclass_fields__)


def batch_to_csv(rows: Iterable[BatchRow]) -> str:
    return _csv(BATCH_FIELDS, (tuple(getattr(row, name) for name in BATCH_FIELDS) for row in rows))


def batch_to_jsonl(rows: Iterable[BatchRow]) -> str:
    return "".join(json.dumps(asdict(row), ensure_ascii=False) + "\n" for row in rows)


def write_export(content: str, stem: str, suffix: str, directory: Path | None = None) -> Path:
    """Write an export to a new file for download and return its path."""
    safe_stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-") or "export"
    target_dir = Path(tempfile.mkdtemp(prefix="parley-export-", dir=directory))
    path = target_dir / f"{safe_stem}.{suffix}"
    path.write_text(content, encoding="utf-8")
    return path
