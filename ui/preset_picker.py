"""The scenario preset dropdown other tabs share, and the services behind it.

`attach_preset_picker()` adds a preset dropdown to a tab that has a model
dropdown, a system prompt and sampling sliders (the Chat tab): choosing a
preset sets them, and moving a slider switches the dropdown to "custom".
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gradio as gr

from backends.errors import ParleyError
from backends.router import Router
from ui.i18n import language_from_request, label, translate
from ui.services import UIServices
from workbench.batch import BatchSettings, JobManager
from workbench.presets import SAMPLING_FIELDS, Preset, PresetsSettings, PresetStore

logger = logging.getLogger(__name__)

CUSTOM = "custom"


def preset_store(services: UIServices) -> PresetStore:
    """Return the app's preset store, creating it from the config when the app did not."""
    if services.presets is None:
        settings = getattr(services.config, "presets", None) or PresetsSettings()
        services.presets = PresetStore.from_settings(settings)
    store: PresetStore = services.presets
    return store


def job_manager(services: UIServices) -> JobManager:
    """Return the app's batch job manager, creating it from the config when the app did not."""
    if services.jobs is None:
        settings = getattr(services.config, "batch", None) or BatchSettings()
        services.jobs = JobManager(services.router, settings)
    manager: JobManager = services.jobs
    return manager


def preset_choices(store: PresetStore, language: str) -> list[tuple[str, str]]:
    return [(translate("preset.custom", language), CUSTOM), *store.choices(language)]


def find_preset(store: PresetStore, preset_id: str | None) -> Preset | None:
    """Return the chosen preset, or None for "custom" and for a preset deleted meanwhile."""
    if not preset_id or preset_id == CUSTOM:
        return None
    try:
        return store.get(preset_id)
    except ParleyError:
        return None


def describe_preset(store: PresetStore, preset_id: str | None, language: str) -> str:
    preset = find_preset(store, preset_id)
    if preset is None:
        return translate("preset.custom_description", language)
    if store.is_saved_by_user(str(preset_id)):
        return translate("preset.saved_by_user", language)
    return preset.description.get(language)


def ignored_note(router: Router, model: str | None, values: Mapping[str, Any], language: str) -> str:
    """Say which of the set parameters the model ignores, or return "" when it uses them all."""
    if not model:
        return ""
    try:
        ignored = router.info(model).capabilities.ignored_params
    except ParleyError:
        return ""
    dropped = [name for name in SAMPLING_FIELDS if name in ignored and values.get(name) is not None]
    if not dropped:
        return ""
    return "⚠️ " + translate("preset.ignored", language, model=model, params=", ".join(dropped))


@dataclass
class PresetPicker:
    dropdown: gr.Dropdown
    note: gr.Markdown


def attach_preset_picker(
    services: UIServices,
    *,
    model: gr.Dropdown,
    system_prompt: gr.Textbox,
    temperature: gr.Slider,
    top_p: gr.Slider,
    max_tokens: gr.Slider,
    elem_prefix: str = "parley",
) -> PresetPicker:
    """Render a preset dropdown and an ignored-parameters note, and wire them to the given controls."""
    store = preset_store(services)
    router = services.router

    dropdown = gr.Dropdown(
        choices=preset_choices(store, "en"),
        value=CUSTOM,
        label=label("preset.label"),
        info=label("preset.info"),
        elem_id=f"{elem_prefix}-preset",
        interactive=True,
    )
    note = gr.Markdown("", elem_id=f"{elem_prefix}-ignored-params")

    def localise(request: gr.Request) -> Any:
        return gr.Dropdown(choices=preset_choices(store, language_from_request(request)))

    def refresh_choices(current: str | None, request: gr.Request) -> Any:
        # Presets saved in the Scenarios tab since the page loaded show up here.
        return gr.Dropdown(choices=preset_choices(store, language_from_request(request)), value=current)

    def apply(preset_id: str | None, model_name: str | None, request: gr.Request) -> tuple[Any, ...]:
        language = language_from_request(request)
        preset = find_preset(store, preset_id)
        if preset is None:
            return gr.update(), gr.update(), gr.update(), gr.update(), gr.update()
        values = preset.model_dump()
        note_text = ignored_note(router, model_name, values, language)
        return (
            gr.update() if preset.temperature is None else preset.temperature,
            gr.update() if preset.top_p is None else preset.top_p,
            gr.update() if preset.max_tokens is None else preset.max_tokens,
            preset.system_prompt,
            note_text,
        )

    def update_note(model_name: str | None, temp: float | None, nucleus: float | None, limit: float | None,
                    request: gr.Request) -> str:
        values = {"temperature": temp, "top_p": nucleus, "max_tokens": limit}
        return ignored_note(router, model_name, values, language_from_request(request))

    gr.on(triggers=None, fn=localise, inputs=None, outputs=[dropdown], queue=False, api_visibility="private")
    dropdown.focus(refresh_choices, [dropdown], [dropdown], queue=False, api_visibility="private")
    dropdown.change(
        apply, [dropdown, model], [temperature, top_p, max_tokens, system_prompt, note], queue=False,
        api_visibility="private",
    )
    for slider in (temperature, top_p, max_tokens):
        # .input fires only for the user's own moves, not when a preset sets the slider.
        slider.input(lambda: CUSTOM, None, [dropdown], queue=False, api_visibility="private")
    model.change(update_note, [model, temperature, top_p, max_tokens], [note], queue=False, api_visibility="private")
    return PresetPicker(dropdown=dropdown, note=note)


def attach_to_chat_tab(chat: Any, services: UIServices) -> PresetPicker:
    """Add the preset picker to the Chat tab, below its sampling sliders.

    `chat` is the `ui.chat_tab.ChatTab` that `build_chat_tab()` returns. The
    picker renders into the container of the sliders (the "Model and
    sampling" accordion), entered again after the tab is built.
    """
    sampling = chat.sampling
    container = sampling.temperature.parent
    # Entering a built block context again re-points its parent at the current context; put it back after.
    original_parent = container.parent
    with container:
        picker = attach_preset_picker(
            services,
            model=chat.model,
            system_prompt=chat.system_prompt,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_tokens,
        )
    container.parent = original_parent
    return picker
