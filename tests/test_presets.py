"""Scenario presets: the shipped file, config overrides, saved presets and ignored parameters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backends.types import Capabilities, SamplingParams
from tests.workbench_support import scripted_router
from workbench.errors import PresetFileError, PresetNameError, PresetNotFoundError, PresetSaveError, PresetValueError
from workbench.presets import (
    SHIPPED_PRESETS,
    PresetOverride,
    PresetsSettings,
    PresetStore,
    apply_overrides,
    load_preset_file,
    split_ignored,
)
from workbench.runner import RunSpec, run_once

VALID_PRESET = """
[presets.demo]
label.en = "Demo"
label.zh-CN = "演示"
description.en = "For demos."
description.zh-CN = "用于演示。"
temperature = 0.5
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "presets.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_presets_cover_required_scenarios() -> None:
    presets = load_preset_file(SHIPPED_PRESETS)

    for preset_id in ("customer_service", "creative_writing", "code", "translation", "summarisation"):
        assert preset_id in presets
        assert presets[preset_id].description.en
        assert presets[preset_id].description.zh_cn
        assert presets[preset_id].system_prompt
    assert presets["customer_service"].temperature == 0.3
    assert presets["creative_writing"].temperature == 0.9
    assert presets["customer_service"].label.get("zh-CN") == "客服"
    assert presets["customer_service"].label.get("en") == "Customer service"


def test_preset_params_become_sampling_params() -> None:
    preset = load_preset_file(SHIPPED_PRESETS)["code"]

    params = preset.params()

    assert params == SamplingParams(
        temperature=0.1, top_p=0.95, max_tokens=4096, presence_penalty=0.0, frequency_penalty=0.0
    )


@pytest.mark.parametrize(
    ("replace", "by", "key"),
    [
        ("temperature = 0.5", "temperature = 3.5", "presets.demo.temperature"),
        ("temperature = 0.5", "temprature = 0.5", "presets.demo.temprature"),
        ('label.zh-CN = "演示"', "", "presets.demo.label.zh-CN"),
        ("temperature = 0.5", 'max_tokens = "many"', "presets.demo.max_tokens"),
        ("[presets.demo]", "[presets.\"Bad Id\"]", "presets.Bad Id"),
    ],
)
def test_invalid_preset_file_names_key(tmp_path: Path, replace: str, by: str, key: str) -> None:
    path = write(tmp_path, VALID_PRESET.replace(replace, by))

    with pytest.raises(PresetFileError) as caught:
        load_preset_file(path)

    assert caught.value.params["key_path"] == key
    assert key in str(caught.value)
    assert str(path) in str(caught.value)


def test_preset_file_with_bad_toml_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "[presets.demo\ntemperature = 0.5\n")

    with pytest.raises(PresetFileError, match="not valid TOML"):
        load_preset_file(path)


def test_override_changes_only_given_fields() -> None:
    presets = load_preset_file(SHIPPED_PRESETS)

    merged = apply_overrides(presets, {"code": PresetOverride(temperature=0.0, max_tokens=100)})

    assert merged["code"].temperature == 0.0
    assert merged["code"].max_tokens == 100
    assert merged["code"].top_p == presets["code"].top_p
    assert merged["code"].system_prompt == presets["code"].system_prompt
    assert presets["code"].temperature == 0.1


def test_override_out_of_range_names_config_key() -> None:
    presets = load_preset_file(SHIPPED_PRESETS)

    with pytest.raises(PresetFileError) as caught:
        apply_overrides(presets, {"code": PresetOverride(top_p=1.5)})

    assert caught.value.params["key_path"] == "presets.overrides.code.top_p"


def test_override_adding_preset_needs_label() -> None:
    with pytest.raises(PresetFileError) as caught:
        apply_overrides({}, {"new_one": PresetOverride(temperature=0.4)})

    assert caught.value.params["key_path"] == "presets.overrides.new_one.label"


def test_settings_overrides_reach_store(tmp_path: Path) -> None:
    settings = PresetsSettings.model_validate(
        {"data_dir": str(tmp_path), "overrides": {"customer_service": {"temperature": 0.25}}}
    )

    store = PresetStore.from_settings(settings)

    assert store.get("customer_service").temperature == 0.25
    assert store.get("creative_writing").temperature == 0.9


def test_saved_preset_survives_restart(tmp_path: Path) -> None:
    settings = PresetsSettings(data_dir=tmp_path / "data")
    store = PresetStore.from_settings(settings)

    preset_id = store.save("我的客服", {"temperature": 0.45, "top_p": 0.8, "seed": 7, "system_prompt": "Be brief."})
    reopened = PresetStore.from_settings(settings)

    assert preset_id == "我的客服"
    saved = reopened.get("我的客服")
    assert saved.temperature == 0.45
    assert saved.top_p == 0.8
    assert saved.seed == 7
    assert saved.system_prompt == "Be brief."
    assert reopened.is_saved_by_user("我的客服")
    assert ("我的客服", "我的客服") in reopened.choices("zh-CN")
    assert json.loads(settings.user_file.read_text(encoding="utf-8"))["version"] == 1
    assert [path.name for path in settings.user_file.parent.iterdir()] == ["user_presets.json"]


def test_saving_same_name_replaces_preset(tmp_path: Path) -> None:
    store = PresetStore.from_settings(PresetsSettings(data_dir=tmp_path))

    store.save("mine", {"temperature": 0.1})
    store.save("mine", {"temperature": 0.2})

    assert store.get("mine").temperature == 0.2
    assert sum(1 for _, preset_id in store.choices("en") if preset_id == "mine") == 1


def test_deleted_preset_is_gone_after_restart(tmp_path: Path) -> None:
    settings = PresetsSettings(data_dir=tmp_path)
    store = PresetStore.from_settings(settings)
    store.save("mine", {"temperature": 0.1})

    store.delete("mine")

    with pytest.raises(PresetNotFoundError):
        PresetStore.from_settings(settings).get("mine")


@pytest.mark.parametrize("name", ["Code", "code", "翻译", "custom", "", "   ", "x" * 65, "bell\x07"])
def test_save_rejects_taken_or_bad_names(tmp_path: Path, name: str) -> None:
    store = PresetStore.from_settings(PresetsSettings(data_dir=tmp_path))

    with pytest.raises(PresetNameError):
        store.save(name, {"temperature": 0.5})

    assert not (tmp_path / "user_presets.json").exists()


def test_save_rejects_out_of_range_value(tmp_path: Path) -> None:
    store = PresetStore.from_settings(PresetsSettings(data_dir=tmp_path))

    with pytest.raises(PresetValueError, match="temperature"):
        store.save("hot", {"temperature": 9.0})


def test_corrupt_saved_presets_file_names_key(tmp_path: Path) -> None:
    settings = PresetsSettings(data_dir=tmp_path)
    settings.user_file.write_text(
        json.dumps({"version": 1, "presets": {"mine": {"label": {"en": "m", "zh-CN": "m"},
                                                        "description": {"en": "d", "zh-CN": "d"},
                                                        "top_p": 7}}}),
        encoding="utf-8",
    )

    with pytest.raises(PresetFileError) as caught:
        PresetStore.from_settings(settings)

    assert caught.value.params["key_path"] == "presets.mine.top_p"


def test_split_ignored_drops_only_set_params() -> None:
    reasoner = Capabilities(reasoning=True, ignored_params=frozenset({"temperature", "top_p", "presence_penalty"}))

    kept, dropped = split_ignored(SamplingParams(temperature=0.7, top_p=0.9, max_tokens=50), reasoner)

    assert dropped == ("temperature", "top_p")
    assert kept == SamplingParams(max_tokens=50)


async def test_ignored_params_are_not_sent() -> None:
    router, backends = scripted_router(
        deep={"models": [{"name": "reasoner", "ignored_params": ["temperature", "top_p"]}], "replies": [{"text": "ok"}]}
    )
    spec = RunSpec(model="reasoner", params=SamplingParams(temperature=0.9, top_p=0.5, seed=3))

    result = await run_once(router, spec, "hi")

    assert result.ignored_params == ("temperature", "top_p")
    sent = backends["deep"].received[0].params
    assert sent.temperature is None
    assert sent.top_p is None
    assert sent.seed == 3


def test_unwritable_data_dir_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the data directory should be", encoding="utf-8")
    store = PresetStore.from_settings(PresetsSettings(data_dir=blocker))

    with pytest.raises(PresetSaveError) as caught:
        store.save("mine", {"temperature": 0.5})

    assert caught.value.params["file"] == str(blocker / "user_presets.json")
    assert "presets.data_dir" in caught.value.fix
    with pytest.raises(PresetNotFoundError):
        store.get("mine")
