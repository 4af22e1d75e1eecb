"""The Batch tab: upload prompts, pick models and a grid, start a background job, watch and download it.

The job belongs to the JobManager, not to this page: closing the tab leaves
it running, and the job id (or the "Your jobs" list) opens it again. A
timer polls the job's progress once a second while it is shown.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import Any

import gradio as gr

from backends.errors import ParleyError
from backends.types import SamplingParams
from ui.i18n import CHINESE, label, language_from_request, normalize_language, translate, translate_error, user_error
from ui.preset_picker import CUSTOM, find_preset, ignored_note, job_manager, preset_choices, preset_store
from ui.services import UIServices
from workbench.batch import BatchRow, Job, JobManager, base_spec, make_plan, parse_grid_values
from workbench.errors import InputFileTooLargeError
from workbench.export import batch_to_csv, batch_to_jsonl, write_export
from workbench.inputs import ParsedInput, parse_prompts
from workbench.presets import Preset

logger = logging.getLogger(__name__)

# Rows the results table shows; the downloads have every row.
TABLE_ROWS = 500
OUTPUT_PREVIEW_CHARS = 300

# Table columns: the "batch.col.<name>" header key and the width in pixels. The widths keep every header
# readable on one or two lines; the reply and error columns wrap their text.
TABLE_COLUMNS: tuple[tuple[str, int], ...] = (
    ("number", 56), ("row_id", 90), ("model", 140), ("temperature", 110), ("top_p", 80), ("status", 90),
    ("latency_s", 110), ("tokens", 90), ("served_by", 140), ("matches_expected", 120), ("output", 360),
    ("error", 240),
)  # fmt: skip
TABLE_WIDTHS: list[str | int] = [width for _, width in TABLE_COLUMNS]
# Exports kept per job and progress, so polling an ended job does not write its files again.
MAX_CACHED_EXPORTS = 32


def _owner(request: gr.Request | None) -> str | None:
    return getattr(request, "username", None) if request is not None else None


def read_upload(path: str | None, max_bytes: int) -> ParsedInput:
    """Parse an uploaded file, checking its size before reading it into memory."""
    if not path:
        raise FileNotFoundError("no file")
    file = Path(path)
    size = file.stat().st_size
    if size > max_bytes:
        raise InputFileTooLargeError(
            f"{file.name} is {size / 1e6:.1f} MB, over the {max_bytes / 1e6:.1f} MB limit",
            filename=file.name, size_mb=round(size / 1e6, 1), limit_mb=round(max_bytes / 1e6, 1),
        )  # fmt: skip
    return parse_prompts(file.read_bytes(), file.name, max_bytes=max_bytes)


def parsed_summary(parsed: ParsedInput, language: str) -> str:
    """Describe an uploaded file: how many prompts were read, in which format, and how many rows were skipped."""
    count = len(parsed.rows)
    text = translate("batch.parsed_one" if count == 1 else "batch.parsed", language, rows=count,
                     format=parsed.file_format, encoding=parsed.encoding)
    skipped = parsed.skipped_blank
    if skipped:
        # Chinese sentences follow a full stop without a space.
        separator = "" if normalize_language(language) == CHINESE else " "
        text += separator + translate("batch.skipped_one" if skipped == 1 else "batch.skipped", language, count=skipped)
    return text


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    minutes, second = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    if hours:
        return f"{hours}:{minute:02d}:{second:02d}"
    return f"{minute}:{second:02d}"


def progress_html(manager: JobManager, job: Job, language: str) -> str:
    progress = manager.progress(job)
    state = translate(f"batch.state.{progress.state}", language)
    text = translate("batch.progress", language, job_id=job.id, state=state, done=progress.done,
                     total=progress.total, failed=progress.failed, elapsed=format_duration(progress.elapsed_s))
    if progress.eta_s is not None:
        text += " " + translate("batch.eta", language, eta=format_duration(progress.eta_s))
    if job.problem:
        text += f" ({job.problem})"
    percent = f"{progress.fraction * 100:.1f}"
    # The text may carry a file name the user chose, so it is escaped.
    return (
        f'<progress id="parley-batch-bar" value="{progress.done}" max="{progress.total}" style="width:100%"></progress>'
        f'<div id="parley-batch-progress-text" data-state="{progress.state}" data-done="{progress.done}">'
        f"{percent}% · {html.escape(text)}</div>"
    )


def table_headers(language: str) -> list[str]:
    return [translate(f"batch.col.{name}", language) for name, _ in TABLE_COLUMNS]


def _matches_text(matches: bool | None, language: str) -> str:
    if matches is None:
        return ""
    return translate("batch.matches.yes" if matches else "batch.matches.no", language)


def table_rows(rows: list[BatchRow], language: str = "en") -> list[list[Any]]:
    shown = []
    for row in rows[:TABLE_ROWS]:
        output = row.output if len(row.output) <= OUTPUT_PREVIEW_CHARS else row.output[:OUTPUT_PREVIEW_CHARS] + "…"
        shown.append([row.index + 1, row.row_id, row.model, row.temperature, row.top_p,
                      translate(f"batch.row.{row.status}", language), row.latency_s, row.tokens, row.served_by,
                      _matches_text(row.matches_expected, language), output, row.error or ""])
    return shown


def table_value(rows: list[BatchRow], language: str) -> dict[str, Any]:
    """Return the results table with headers in `language`; the downloads keep the raw field names."""
    return {"headers": table_headers(language), "data": table_rows(rows, language)}


def job_choice(job: Job, language: str) -> tuple[str, str]:
    state = translate(f"batch.state.{job.state}", language)
    return translate("batch.job_choice", language, job_id=job.id, source=job.plan.source or "-", state=state), job.id


class ExportCache:
    """The download files of recent (job, progress) pairs, written once each."""

    def __init__(self) -> None:
        self._files: dict[tuple[str, int, str], list[str]] = {}

    def files(self, job: Job) -> list[str]:
        key = (job.id, job.done, job.state)
        if key not in self._files:
            rows = job.rows()
            self._files[key] = [str(write_export(batch_to_csv(rows), f"batch-{job.id}", "csv")),
                                str(write_export(batch_to_jsonl(rows), f"batch-{job.id}", "jsonl"))]
            while len(self._files) > MAX_CACHED_EXPORTS:
                del self._files[next(iter(self._files))]
        return self._files[key]


def build_batch_tab(services: UIServices) -> None:
    """Render the Batch tab in the current Blocks context and wire its events."""
    store = preset_store(services)
    manager = job_manager(services)
    router = services.router
    limits = manager.settings
    models = [info.name for info in router.models()]

    gr.Markdown(label("batch.intro"))
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            upload = gr.File(label=label("batch.file"), file_types=[".csv", ".tsv", ".txt", ".jsonl", ".json"],
                             type="filepath", elem_id="parley-batch-file")
            parsed_note = gr.Markdown("", elem_id="parley-batch-parsed")
            chosen_models = gr.CheckboxGroup(models, value=models[:1], label=label("batch.models"),
                                             elem_id="parley-batch-models")
            preset = gr.Dropdown(preset_choices(store, "en"), value=CUSTOM, label=label("batch.preset"),
                                 info=label("batch.preset_info"), elem_id="parley-batch-preset")
            temperatures = gr.Textbox(label=label("batch.temperatures"), info=label("batch.grid_info"),
                                      placeholder="0.2, 0.7", elem_id="parley-batch-temperatures")
            top_ps = gr.Textbox(label=label("batch.top_ps"), info=label("batch.grid_info"), placeholder="0.9, 1.0",
                                elem_id="parley-batch-top-ps")
            use_cache = gr.Checkbox(value=False, label=label("cmp.use_cache"), info=label("cmp.use_cache_info"),
                                    elem_id="parley-batch-use-cache")
            start = gr.Button(label("batch.start"), variant="primary", elem_id="parley-batch-start")
        with gr.Column(scale=2):
            with gr.Row():
                job_id = gr.Textbox(label=label("batch.job_id"), info=label("batch.job_id_info"), scale=2,
                                    elem_id="parley-batch-job-id")
                jobs = gr.Dropdown([], value=None, label=label("batch.jobs"), scale=2, elem_id="parley-batch-jobs",
                                   allow_custom_value=True)
                open_job = gr.Button(label("batch.open"), scale=1, elem_id="parley-batch-open")
            status = gr.Markdown("", elem_id="parley-batch-status")
            progress = gr.HTML("", elem_id="parley-batch-progress")
            with gr.Row():
                cancel = gr.Button(label("batch.cancel"), variant="stop", elem_id="parley-batch-cancel")
                download = gr.Button(label("batch.download"), elem_id="parley-batch-download")
            files = gr.File(label=label("batch.download"), file_count="multiple", interactive=False,
                            elem_id="parley-batch-files")
            table = gr.Dataframe(headers=table_headers("en"), value=[], label=label("batch.results"),
                                 interactive=False, wrap=True, column_widths=TABLE_WIDTHS,
                                 elem_id="parley-batch-table")
    timer = gr.Timer(1.0, active=False)

    exports = ExportCache()

    def job_choices(owner: str | None, language: str) -> list[tuple[str, str]]:
        return [job_choice(job, language) for job in manager.jobs(owner)]

    def describe_upload(path: str | None, request: gr.Request) -> str:
        language = language_from_request(request)
        if not path:
            return ""
        try:
            parsed = read_upload(path, limits.max_upload_bytes)
        except ParleyError as exc:
            return "⚠️ " + translate_error(exc, language)
        return parsed_summary(parsed, language)

    def view(job_id_text: str, request: gr.Request) -> tuple[Any, ...]:
        """Status note, progress, table, timer, downloads and jobs list of a job; the timer stops once it has ended.

        An empty job id changes nothing, so a message already in the status line stays. The downloads are
        written and the jobs list refreshed when the job has ended, so both show its final state.
        """
        language = language_from_request(request)
        if not (job_id_text or "").strip():
            return gr.update(), gr.update(), gr.update(), gr.Timer(active=False), gr.update(), gr.update()
        try:
            job = manager.get(job_id_text, _owner(request))
        except ParleyError as exc:
            empty = table_value([], language)
            return "⚠️ " + translate_error(exc, language), "", empty, gr.Timer(active=False), gr.update(), gr.update()

        rows = job.rows()
        note = ""
        if len(rows) > TABLE_ROWS:
            note = translate("batch.shown_rows", language, shown=TABLE_ROWS, total=len(rows))
        running = job.state == "running"
        files: Any = gr.update()
        listed: Any = gr.update()
        if not running:
            files = exports.files(job)
            listed = gr.Dropdown(choices=job_choices(_owner(request), language))
        timer_state = gr.Timer(active=running)
        return note, progress_html(manager, job, language), table_value(rows, language), timer_state, files, listed

    def refresh(job_id_text: str, request: gr.Request) -> tuple[Any, ...]:
        """Run `view` without its status note, after an event that wrote its own message there."""
        return view(job_id_text, request)[1:]

    async def start_job(path: str | None, model_names: list[str], preset_id: str | None, temperature_text: str,
                        top_p_text: str, cached: bool, request: gr.Request) -> tuple[Any, ...]:
        language = language_from_request(request)
        owner = _owner(request)
        if not path:
            return gr.update(), translate("batch.no_file", language), gr.update(), gr.update()
        try:
            parsed = read_upload(path, limits.max_upload_bytes)
            found: Preset | None = find_preset(store, preset_id)
            temps = parse_grid_values(temperature_text or "", "temperature", 0.0, 2.0, limits.max_grid_values)
            nucleus = parse_grid_values(top_p_text or "", "top_p", 0.0, 1.0, limits.max_grid_values)
            base = base_spec(found.params(), found.system_prompt) if found else base_spec(SamplingParams())
            plan = make_plan(parsed.rows, model_names or [], temps, nucleus, base, limits, bypass_cache=not cached,
                             source=Path(path).name, language=language)
        except ParleyError as exc:
            logger.info("batch job not started: %s", exc)
            return gr.update(), "⚠️ " + translate_error(exc, language), gr.update(), gr.update()

        job = manager.submit(plan, owner)
        message = translate("batch.started", language, job_id=job.id, runs=plan.total)

        # Name the settings each model ignores; the runs leave them out of its requests.
        values = plan.base.params.as_dict()
        values["temperature"] = values.get("temperature", temps[0])
        values["top_p"] = values.get("top_p", nucleus[0])
        notes = [ignored_note(router, name, values, language) for name in dict.fromkeys(model_names)]
        message = "  \n".join([message, *(note for note in notes if note)])
        return job.id, message, gr.Dropdown(choices=job_choices(owner, language), value=job.id), gr.Timer(active=True)

    async def cancel_job(job_id_text: str, request: gr.Request) -> str:
        try:
            await manager.cancel(job_id_text or "", _owner(request))
        except ParleyError as exc:
            return "⚠️ " + translate_error(exc, language_from_request(request))
        return ""

    def download_job(job_id_text: str, request: gr.Request) -> tuple[Any, str]:
        """Write the rows finished so far; during a run, the status line notes that the files are refreshed at the end."""
        language = language_from_request(request)
        try:
            job = manager.get(job_id_text or "", _owner(request))
        except ParleyError as exc:
            raise user_error(translate_error(exc, language)) from exc

        note = ""
        if job.state == "running":
            note = translate("batch.download_partial", language, done=job.done, total=job.plan.total)
        return exports.files(job), note

    def list_jobs(request: gr.Request) -> Any:
        return gr.Dropdown(choices=job_choices(_owner(request), language_from_request(request)))

    def localise(request: gr.Request) -> tuple[Any, Any, Any]:
        language = language_from_request(request)
        return gr.Dropdown(choices=preset_choices(store, language)), list_jobs(request), table_value([], language)

    private: dict[str, Any] = {"queue": False, "api_visibility": "private"}
    gr.on(triggers=None, fn=localise, inputs=None, outputs=[preset, jobs, table], **private)
    # Outside the queue: Gradio 6.31 can drop the result of a queued event that
    # joins just as the session's previous one completes, which left the note's
    # spinner running after a Start click without a file.
    upload.change(describe_upload, [upload], [parsed_note], **private)
    jobs.focus(list_jobs, None, [jobs], **private)
    view_outputs = [status, progress, table, timer, files, jobs]
    jobs.input(lambda chosen: chosen, [jobs], [job_id], **private).then(
        view, [job_id], view_outputs, api_visibility="private"
    )
    start.click(
        start_job, [upload, chosen_models, preset, temperatures, top_ps, use_cache], [job_id, status, jobs, timer],
        api_name="start_batch",
    ).then(refresh, [job_id], view_outputs[1:], api_visibility="private")
    open_job.click(view, [job_id], view_outputs, api_name="batch_status")
    timer.tick(view, [job_id], view_outputs, api_visibility="private", queue=False)
    cancel.click(cancel_job, [job_id], [status], api_name="cancel_batch").then(
        view, [job_id], view_outputs, api_visibility="private"
    )
    download.click(download_job, [job_id], [files, status], api_name="download_batch")

