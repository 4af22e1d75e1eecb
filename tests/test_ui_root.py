"""The page root: tabs, the model picker, the [ui] config section and the locale script."""

from __future__ import annotations

import httpx
import pytest

from backends.errors import ConfigError
from backends.types import Capabilities, ModelInfo
from config import parse_config
from tests.ui_support import scripted_config, serve_parley
from ui.browser_locale import LOCALE_SCRIPT
from ui.chat_tab import model_choice_label


def test_model_label_shows_capability_badges() -> None:
    plain = ModelInfo(name="chat", backend="ds", upstream="deepseek-chat")
    seeing = ModelInfo(name="vl", backend="local", upstream="vl", capabilities=Capabilities(vision=True))
    thinking = ModelInfo(name="r1", backend="ds", upstream="deepseek-reasoner", capabilities=Capabilities(vision=True, reasoning=True))

    assert model_choice_label(plain) == "chat · ds"
    assert model_choice_label(seeing) == "vl · local 👁"
    assert model_choice_label(thinking) == "r1 · ds 👁🧠"


def test_ui_section_is_parsed_and_strict() -> None:
    config = parse_config({"ui": {"stream_interval_ms": 100, "concurrency_limit": 8}}, source="test", env={})

    assert config.ui.stream_interval_ms == 100
    assert config.ui.concurrency_limit == 8
    with pytest.raises(ConfigError):
        parse_config({"ui": {"stream_intervl_ms": 100}}, source="test", env={})


def test_page_lists_models_and_tabs_and_carries_locale_script() -> None:
    raw = scripted_config(models=[{"name": "scripted-echo"}, {"name": "scripted-vision", "vision": True}])
    with serve_parley(raw) as url:
        page = httpx.get(url + "/", timeout=10)
        config = httpx.get(url + "/config", timeout=10).json()

    # The locale script comes first in <head>, before Gradio's own scripts.
    assert page.status_code == 200
    assert page.text.index(LOCALE_SCRIPT.decode()) < page.text.index("<script type=\"module\"")
    assert int(page.headers["content-length"]) == len(page.content)

    picker = next(c for c in config["components"] if c.get("props", {}).get("elem_id") == "parley-model")
    assert [choice[1] for choice in picker["props"]["choices"]] == ["scripted-echo", "scripted-vision"]
    assert picker["props"]["choices"][1][0] == "scripted-vision · scripted 👁"
    assert picker["props"]["value"] == "scripted-echo"

    tab_ids = {c["props"].get("elem_id") for c in config["components"] if c.get("type") == "tabitem"}
    assert "parley-tab-chat" in tab_ids
