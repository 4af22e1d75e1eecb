"""The Scenarios tab: a preset's sampling settings with plain explanations, and saving your own."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import gradio as gr

from backends.errors import ParleyError
from ui.i18n import label, language_from_request, translate, translate_error
from ui.preset_picker import CUSTOM, describe_preset, find_preset, ignored_note, preset_choices, preset_store
from ui.services import UIServices
from workbench.presets import Preset

logger = logging.getLogger(__name__)

# Slider values shown for a parameter a preset leaves unset: the OpenAI API defaults.
UNSET_DISPLAY = {"temperature": 1.0, "top_p": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0}


@dataclass
class ScenarioControls:
    temperature: gr.Slider
    top_p: gr.Slider
    max_tokens: gr.Slider
    presence_penalty: gr.Slider
    frequency_penalty: gr.Slider
    seed: gr.Number
    system_prompt: gr.Textbox

    def components(self) -> list[Any]:
        """The controls, in the order of `values_from()` and `preset_values()`."""
        return [self.temperature, self.top_p, self.max_tokens, self.presence_penalty, self.frequency_penalty,
                self.seed, self.system_prompt]


FIELDS = ("temperature", "top_p", "max_tokens", "presence_penalty", "frequency_penalty", "seed", "system_prompt")


def values_from(*values: Any) -> dict[str, Any]:
    """Map the controls' values to preset fields; an empty seed is left unset."""
    result = dict(zip(FIELDS, values, strict=True))
    seed = result.get("seed")
    result["seed"] = None if seed in (None, "") else int(seed)
    result["max_tokens"] = None if result["max_tokens"] is None else int(result["max_tokens"])
    return result


def preset_values(preset: Preset, max_tokens_default: int) -> list[Any]:
    """The controls' values for a preset, with display values for what it leaves unset."""
    values: list[Any] = []
    for name in FIELDS:
        value = getattr(preset, name)
        if value is None and name == "max_tokens":
            value = max_tokens_default
        elif value is None and name in UNSET_DISPLAY:
            value = UNSET_DISPLAY[name]
        values.append(value)
    return values


def build_scenario_controls(max_tokens_limit: int, max_tokens_default: int) -> ScenarioControls:
    temperature = gr.Slider(0.0, 2.0, step=0.05, value=0.7, label=label("chat.temperature"),
                            info=label("chat.temperature_info"), elem_id="parley-scn-temperature")
    top_p = gr.Slider(0.0, 1.0, step=0.05, value=1.0, label=label("chat.top_p"), info=label("chat.top_p_info"),
                      elem_id="parley-scn-top-p")
    max_tokens = gr.Slider(1, max_tokens_limit, step=1, value=max_tokens_default, label=label("chat.max_tokens"),
                           info=label("chat.max_tokens_info"), elem_id="parley-scn-max-tokens")
    presence = gr.Slider(-2.0, 2.0, step=0.1, value=0.0, label=label("scn.presence_penalty"),
                         info=label("scn.presence_penalty_info"), elem_id="parley-scn-presence")
    frequency = gr.Slider(-2.0, 2.0, step=0.1, value=0.0, label=label("scn.frequency_penalty"),
                          info=label("scn.frequency_penalty_info"), elem_id="parley-scn-frequency")
    seed = gr.Number(value=None, precision=0, minimum=0, maximum=2**32 - 1, label=label("scn.seed"),
                     info=label("scn.seed_info"), elem_id="parley-scn-seed")
    system_prompt = gr.Textbox(label=label("chat.system_prompt"), lines=4, elem_id="parley-scn-system-prompt")
    return ScenarioControls(temperature, top_p, max_tokens, presence, frequency, seed, system_prompt)  # fmt: skip


def build_scenarios_tab(services: UIServices) -> ScenarioControls:
    """Render the Scenarios tab in the current Blocks context and wire its events."""
    store = preset_store(services)
    router = services.router
    settings = services.settings
    models = [info.name for info in router.models()]
    first_preset = next(iter(store.all()), CUSTOM)

    gr.Markdown(label("scn.intro"))
    with gr.Row():
        with gr.Column(scale=1, min_width=260):
            preset = gr.Dropdown(choices=preset_choices(store, "en"), value=first_preset, label=label("preset.label"),
                                 elem_id="parley-scn-preset", interactive=True)
            description = gr.Markdown(describe_preset(store, first_preset, "en"), elem_id="parley-scn-description")
            model = gr.Dropdown(choices=models, value=models[0] if models else None, label=label("scn.model"),
                                info=label("scn.model_info"), elem_id="parley-scn-model", interactive=True)
            note = gr.Markdown("", elem_id="parley-scn-ignored")
            gr.Markdown(label("scn.explain"), elem_id="parley-scn-explain")
        with gr.Column(scale=2):
            controls = build_scenario_controls(settings.max_tokens_limit, settings.default_max_tokens)
            with gr.Row():
                name = gr.Textbox(label=label("scn.name"), placeholder=label("scn.name_placeholder"), scale=3,
                                  elem_id="parley-scn-name")
                save = gr.Button(label("scn.save"), variant="primary", scale=1, elem_id="parley-scn-save")
                delete = gr.Button(label("scn.delete"), variant="stop", scale=1, elem_id="parley-scn-delete")
            status = gr.Markdown("", elem_id="parley-scn-status")

    components = controls.components()

    def show(preset_id: str | None, model_name: str | None, request: gr.Request) -> list[Any]:
        language = language_from_request(request)
        found = find_preset(store, preset_id)
        text = describe_preset(store, preset_id, language)
        if found is None:
            return [text, gr.update(), *[gr.update() for _ in components]]
        values = preset_values(found, settings.default_max_tokens)
        return [text, ignored_note(router, model_name, found.model_dump(), language), *values]

    def load(request: gr.Request) -> list[Any]:
        language = language_from_request(request)
        current = next(iter(store.all()), CUSTOM)
        found = find_preset(store, current)
        values = preset_values(found, settings.default_max_tokens) if found else [gr.update() for _ in components]
        return [gr.Dropdown(choices=preset_choices(store, language), value=current),
                describe_preset(store, current, language), *values]

    def mark_custom(request: gr.Request) -> tuple[str, str]:
        return CUSTOM, translate("preset.custom_description", language_from_request(request))

    # Gradio passes gr.Request by annotation, so these take the seven control values by name, not *args.
    def check(model_name: str | None, temperature: float, top_p: float, max_tokens: float, presence: float,
              frequency: float, seed: float | None, system_prompt: str, request: gr.Request) -> str:
        values = values_from(temperature, top_p, max_tokens, presence, frequency, seed, system_prompt)
        return ignored_note(router, model_name, values, language_from_request(request))

    def save_preset(preset_name: str, temperature: float, top_p: float, max_tokens: float, presence: float,
                    frequency: float, seed: float | None, system_prompt: str, request: gr.Request) -> tuple[Any, str]:
        language = language_from_request(request)
        values = values_from(temperature, top_p, max_tokens, presence, frequency, seed, system_prompt)
        try:
            saved = store.save(preset_name or "", values)
        except ParleyError as exc:
            logger.info("preset not saved: %s", exc)
            return gr.update(), "⚠️ " + translate_error(exc, language)
        return gr.Dropdown(choices=preset_choices(store, language), value=saved), translate("scn.saved", language, name=saved)

    def delete_preset(preset_id: str | None, request: gr.Request) -> tuple[Any, str]:
        language = language_from_request(request)
        if not preset_id or not store.is_saved_by_user(preset_id):
            return gr.update(), translate("scn.delete_shipped", language)
        try:
            store.delete(preset_id)
        except ParleyError as exc:
            return gr.update(), "⚠️ " + translate_error(exc, language)
        return gr.Dropdown(choices=preset_choices(store, language), value=CUSTOM), translate("scn.deleted", language, name=preset_id)

    private: dict[str, Any] = {"queue": False, "api_visibility": "private"}
    gr.on(triggers=None, fn=load, inputs=None, outputs=[preset, description, *components], **private)
    preset.change(show, [preset, model], [description, note, *components], **private)
    for component in components:
        component.input(mark_custom, None, [preset, description], **private)
    gr.on([model.change, *(c.input for c in components)], check, [model, *components], [note], **private)
    save.click(save_preset, [name, *components], [preset, status], api_name="save_preset", queue=False)
    delete.click(delete_preset, [preset], [preset, status], api_visibility="private", queue=False)
    return controls
