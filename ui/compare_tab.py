"""The Compare tab: one prompt, 2 to 4 panes streaming at once, each with its own model and settings.

When the app has an image pipeline, an optional image goes to every pane,
prepared within each pane model's limits (a model without vision reports
that it cannot see images). When it has a transcriber, a recording fills in
the prompt. Without them the tab takes text only and says so.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from dataclasses import dataclass, replace
from typing import Any

import gradio as gr

from backends.errors import ParleyError
from backends.types import ImagePart, SamplingParams
from ui.i18n import label, language_from_request, translate, translate_error
from ui.preset_picker import CUSTOM, find_preset, ignored_note, preset_choices, preset_store
from ui.services import UIServices
from workbench.compare import MAX_PANES, MAX_REPEATS, MIN_PANES, CompareReport, CompareRun, Pane, PaneSnapshot
from workbench.export import compare_to_csv, compare_to_json, compare_to_markdown, write_export
from workbench.presets import PresetStore
from workbench.runner import RunSpec

logger = logging.getLogger(__name__)


@dataclass
class PaneControls:
    column: gr.Column
    model: gr.Dropdown
    preset: gr.Dropdown
    temperature: gr.Slider
    top_p: gr.Slider
    max_tokens: gr.Slider
    output: gr.Textbox
    stats: gr.Markdown


def _figure(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def format_stats(pane: PaneSnapshot, language: str) -> str:
    """Format the figures under a pane: the live or latest run, then the spread over finished runs."""
    parts: list[str] = []
    latest = pane.latest
    if pane.running:
        parts.append(translate("cmp.run_of", language, done=len(pane.runs) + 1, total=pane.repeats))
        if pane.live_ttft_s is None:
            parts.append(translate("cmp.waiting", language))
        else:
            parts.append(translate("cmp.ttft", language, value=_figure(pane.live_ttft_s, 2)))
            parts.append(translate("cmp.tokens_estimated", language, value=pane.live_tokens))
    elif latest is not None and latest.ok:
        parts.append(translate("cmp.ttft", language, value=_figure(latest.ttft_s, 2)))
        parts.append(translate("cmp.speed", language, value=_figure(latest.tokens_per_s, 1)))
        token_key = "cmp.tokens_estimated" if latest.tokens_estimated else "cmp.tokens"
        parts.append(translate(token_key, language, value=latest.tokens))
        parts.append(translate("cmp.chars", language, value=latest.chars))
        if latest.served_by:
            parts.append(translate("reply.served_by", language, who=latest.served_by))
    lines = [" · ".join(parts)] if parts else []

    finished = [run for run in pane.runs if run.ok]
    if len(finished) > 1:
        cells = {}
        for metric, digits in (("ttft_s", 2), ("tokens_per_s", 1), ("tokens", 0)):
            found = pane.spread(metric)
            cells[metric] = "–" if found is None else " / ".join(
                _figure(value, digits) for value in (found.minimum, found.median, found.maximum)
            )
        lines.append(translate("cmp.spread", language, runs=len(finished), ttft=cells["ttft_s"],
                               speed=cells["tokens_per_s"], tokens=cells["tokens"]))

    failures = [run for run in pane.runs if not run.ok]
    if failures:
        lines.append("⚠️ " + translate("cmp.errors", language, count=len(failures), runs=len(pane.runs)))
        last = failures[-1]
        lines.append(translate_error(last.exception, language) if last.exception else last.error or "")
    return "  \n".join(lines)


def pane_spec(store: PresetStore, model: str, preset_id: str | None, temperature: float, top_p: float,
              max_tokens: float, seed: float | None) -> RunSpec:
    """Build a pane's settings: its preset (penalties, system prompt) under its sliders and the shared seed."""
    preset = find_preset(store, preset_id)
    params = preset.params() if preset is not None else SamplingParams()
    params = replace(params, temperature=float(temperature), top_p=float(top_p), max_tokens=int(max_tokens))
    if seed not in (None, ""):
        params = replace(params, seed=int(seed))
    return RunSpec(model=model, params=params, system_prompt=preset.system_prompt if preset else "")


def export_files(report: CompareReport) -> list[str]:
    stem = f"compare-{report.started_at.strftime('%Y%m%d-%H%M%S')}"
    return [
        str(write_export(compare_to_markdown(report), stem, "md")),
        str(write_export(compare_to_json(report), stem, "json")),
        str(write_export(compare_to_csv(report), stem, "csv")),
    ]


def build_compare_tab(services: UIServices) -> list[PaneControls]:
    """Render the Compare tab in the current Blocks context and wire its events."""
    store = preset_store(services)
    router = services.router
    settings = services.settings
    models = [info.name for info in router.models()]

    images = services.image_pipeline
    transcriber = services.transcriber
    with gr.Row():
        prompt = gr.Textbox(label=label("cmp.prompt"), lines=3, scale=3, elem_id="parley-cmp-prompt")
        image = gr.Image(type="filepath", sources=["upload", "clipboard"], label=label("cmp.image"), scale=1,
                         visible=images is not None, elem_id="parley-cmp-image")
        voice = gr.Audio(sources=["microphone", "upload"], type="filepath", label=label("cmp.voice"), scale=1,
                         visible=transcriber is not None, elem_id="parley-cmp-voice")
    if images is None or transcriber is None:
        gr.Markdown(label("cmp.text_only"), elem_id="parley-cmp-text-only")
    with gr.Row():
        count = gr.Radio([2, 3, 4], value=MIN_PANES, label=label("cmp.panes"), elem_id="parley-cmp-count")
        repeats = gr.Slider(1, MAX_REPEATS, step=1, value=1, label=label("cmp.repeats"), info=label("cmp.repeats_info"),
                            elem_id="parley-cmp-repeats")
        seed = gr.Number(value=None, precision=0, minimum=0, maximum=2**32 - 1, label=label("cmp.seed"),
                         info=label("cmp.seed_info"), elem_id="parley-cmp-seed")
        use_cache = gr.Checkbox(value=False, label=label("cmp.use_cache"), info=label("cmp.use_cache_info"),
                                elem_id="parley-cmp-use-cache")
    with gr.Row():
        run = gr.Button(label("cmp.run"), variant="primary", elem_id="parley-cmp-run")
        stop = gr.Button(label("cmp.stop"), variant="stop", elem_id="parley-cmp-stop")
    status = gr.Markdown("", elem_id="parley-cmp-status")

    panes: list[PaneControls] = []
    with gr.Row(equal_height=False):
        for index in range(MAX_PANES):
            number = index + 1
            with gr.Column(visible=index < MIN_PANES, min_width=240) as column:
                gr.Markdown(f"**{number}**")
                model = gr.Dropdown(models, value=models[index % len(models)] if models else None,
                                    label=label("chat.model"), elem_id=f"parley-cmp-model-{number}")
                preset = gr.Dropdown(preset_choices(store, "en"), value=CUSTOM, label=label("preset.label"),
                                     elem_id=f"parley-cmp-preset-{number}")
                temperature = gr.Slider(0.0, 2.0, step=0.05, value=settings.default_temperature,
                                        label=label("chat.temperature"), elem_id=f"parley-cmp-temperature-{number}")
                top_p = gr.Slider(0.0, 1.0, step=0.05, value=settings.default_top_p, label=label("chat.top_p"),
                                  elem_id=f"parley-cmp-top-p-{number}")
                max_tokens = gr.Slider(1, settings.max_tokens_limit, step=1,
                                       value=min(settings.default_max_tokens, settings.max_tokens_limit),
                                       label=label("chat.max_tokens"), elem_id=f"parley-cmp-max-tokens-{number}")
                output = gr.Textbox(label=label("cmp.output"), lines=12, max_lines=30, interactive=False,
                                    autoscroll=True, elem_id=f"parley-cmp-output-{number}")
                stats = gr.Markdown("", elem_id=f"parley-cmp-stats-{number}")
            panes.append(PaneControls(column, model, preset, temperature, top_p, max_tokens, output, stats))
    exports = gr.File(label=label("cmp.exports"), file_count="multiple", interactive=False, elem_id="parley-cmp-exports")

    private: dict[str, Any] = {"queue": False, "api_visibility": "private"}

    def show_panes(number: int) -> list[Any]:
        return [gr.Column(visible=index < int(number)) for index in range(MAX_PANES)]

    count.change(show_panes, [count], [pane.column for pane in panes], **private)

    def localise(request: gr.Request) -> list[Any]:
        choices = preset_choices(store, language_from_request(request))
        return [gr.Dropdown(choices=choices) for _ in panes]

    gr.on(triggers=None, fn=localise, inputs=None, outputs=[pane.preset for pane in panes], **private)

    for pane in panes:
        def apply(preset_id: str | None, model_name: str | None, request: gr.Request) -> tuple[Any, ...]:
            found = find_preset(store, preset_id)
            if found is None:
                return gr.update(), gr.update(), gr.update(), gr.update()
            note = ignored_note(router, model_name, found.model_dump(), language_from_request(request))
            return (
                gr.update() if found.temperature is None else found.temperature,
                gr.update() if found.top_p is None else found.top_p,
                gr.update() if found.max_tokens is None else found.max_tokens,
                note,
            )

        pane.preset.change(apply, [pane.preset, pane.model], [pane.temperature, pane.top_p, pane.max_tokens, pane.stats],
                           **private)
        for slider in (pane.temperature, pane.top_p, pane.max_tokens):
            slider.input(lambda: CUSTOM, None, [pane.preset], **private)

    pane_inputs = [component for pane in panes
                   for component in (pane.model, pane.preset, pane.temperature, pane.top_p, pane.max_tokens)]
    outputs = [*(pane.output for pane in panes), *(pane.stats for pane in panes), status, exports]

    async def transcribe_prompt(path: str | None, current: str, request: gr.Request) -> tuple[str, str]:
        """Replace the prompt with the transcript of a recording; on failure keep it and say why."""
        if not path or transcriber is None:
            return current, ""
        try:
            transcript = await transcriber.transcribe(path)
        except ParleyError as exc:
            logger.info("compare recording not transcribed: %s", exc)
            return current, "⚠️ " + translate_error(exc, language_from_request(request))
        return transcript.text, ""

    voice.stop_recording(transcribe_prompt, [voice, prompt], [prompt, status], api_visibility="private")
    voice.upload(transcribe_prompt, [voice, prompt], [prompt, status], api_name="compare_transcribe",
                 api_visibility="undocumented")

    async def pane_images(path: str | None, model: str) -> tuple[ImagePart, ...]:
        if not path or images is None:
            return ()
        prepared = await images.prepare(Path(path).read_bytes(), model)
        return (prepared.part,)

    # Gradio fills a gr.Request parameter only before *args, so it comes first here.
    async def compare(request: gr.Request, prompt_text: str, image_path: str | None, pane_count: int, runs: float,
                      fixed_seed: float | None, cached: bool, *pane_values: Any) -> AsyncIterator[list[Any]]:
        language = language_from_request(request)
        number = int(pane_count)
        try:
            chosen = []
            for index in range(number):
                model, preset_id, temperature, top_p, max_tokens = pane_values[index * 5: index * 5 + 5]
                spec = pane_spec(store, model, preset_id, temperature, top_p, max_tokens, fixed_seed)
                attached = await pane_images(image_path, model)
                chosen.append(Pane(label=f"{index + 1}: {model}", spec=spec, images=attached))
            session = CompareRun(router, prompt_text or "", chosen, repeats=int(runs), bypass_cache=not cached,
                                 language=language)
        except ParleyError as exc:
            yield [*(gr.update() for _ in range(2 * MAX_PANES)), "⚠️ " + translate_error(exc, language), None]
            return

        notes = [ignored_note(router, pane.spec.model, pane.spec.params.as_dict(), language) for pane in chosen]
        status_text = "  \n".join(note for note in notes if note)
        def panes_view(snapshot: tuple[PaneSnapshot, ...]) -> list[str]:
            texts = [pane.text for pane in snapshot] + [""] * (MAX_PANES - number)
            stats = [format_stats(pane, language) for pane in snapshot] + [""] * (MAX_PANES - number)
            return [*texts, *stats]

        async for snapshot in session.updates(interval_s=max(settings.stream_interval_ms, 50) / 1000):
            yield [*panes_view(snapshot), status_text, gr.update()]

        # The last view again, now with the exports of the finished run.
        yield [*panes_view(session.snapshot()), status_text, export_files(session.report())]

    run_event = run.click(
        compare,
        [prompt, image, count, repeats, seed, use_cache, *pane_inputs],
        outputs,
        api_name="compare",
        concurrency_limit=settings.concurrency_limit,
        concurrency_id="compare",
    )
    stop.click(None, None, None, cancels=[run_event], **private)
    return panes

