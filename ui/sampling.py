"""The sampling controls of a chat: temperature, top-p and max tokens.

A small group so other tabs can reuse it and presets can set it: a preset
writes the values of `SamplingControls.components()` in that order.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from backends.types import SamplingParams
from ui.i18n import label
from ui.settings import UISettings


@dataclass
class SamplingControls:
    temperature: gr.Slider
    top_p: gr.Slider
    max_tokens: gr.Slider

    def components(self) -> list[gr.Slider]:
        """The controls in the order `to_params()` takes their values."""
        return [self.temperature, self.top_p, self.max_tokens]


def build_sampling_controls(settings: UISettings, *, elem_prefix: str = "parley") -> SamplingControls:
    """Render the three sliders in the current Blocks context."""
    temperature = gr.Slider(
        minimum=0.0,
        maximum=2.0,
        step=0.05,
        value=settings.default_temperature,
        label=label("chat.temperature"),
        info=label("chat.temperature_info"),
        elem_id=f"{elem_prefix}-temperature",
    )
    top_p = gr.Slider(
        minimum=0.05,
        maximum=1.0,
        step=0.05,
        value=settings.default_top_p,
        label=label("chat.top_p"),
        info=label("chat.top_p_info"),
        elem_id=f"{elem_prefix}-top-p",
    )
    max_tokens = gr.Slider(
        minimum=1,
        maximum=settings.max_tokens_limit,
        step=1,
        value=min(settings.default_max_tokens, settings.max_tokens_limit),
        label=label("chat.max_tokens"),
        info=label("chat.max_tokens_info"),
        elem_id=f"{elem_prefix}-max-tokens",
    )
    return SamplingControls(temperature=temperature, top_p=top_p, max_tokens=max_tokens)


def to_params(temperature: float | None, top_p: float | None, max_tokens: float | None) -> SamplingParams:
    """Build SamplingParams from the controls' values; None leaves a parameter unset."""
    return SamplingParams(
        temperature=None if temperature is None else float(temperature),
        top_p=None if top_p is None else float(top_p),
        max_tokens=None if max_tokens is None else int(max_tokens),
    )
