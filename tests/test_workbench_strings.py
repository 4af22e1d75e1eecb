"""Every workbench error code has a message in both languages, with and without its params."""

from __future__ import annotations

import string
from pathlib import Path

import pytest

from tests.workbench_support import scripted_router
from ui.batch_tab import parsed_summary
from ui.i18n import STRINGS, translate_error
from ui.workbench_i18n import WORKBENCH_STRINGS
from workbench import errors
from workbench.batch import BatchSettings, JobManager, parse_grid_values
from workbench.compare import CompareInputError
from workbench.inputs import ParsedInput, PromptRow
from workbench.presets import PresetsSettings, PresetStore

CODES = sorted(
    {cls.code for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, Exception) and hasattr(cls, "code")}
    - {"invalid_input", "input_too_large", "config_error", "not_found"}
    | {CompareInputError.code}
)


def test_workbench_strings_are_merged_and_bilingual() -> None:
    for key, entry in WORKBENCH_STRINGS.items():
        assert STRINGS[key] is entry
        assert entry["en"].strip()
        assert entry["zh-CN"].strip()
        english = {name for _, name, _, _ in string.Formatter().parse(entry["en"]) if name}
        chinese = {name for _, name, _, _ in string.Formatter().parse(entry["zh-CN"]) if name}
        assert english == chinese, key


@pytest.mark.parametrize("code", CODES)
def test_every_workbench_error_code_has_message(code: str) -> None:
    assert f"error.{code}" in STRINGS


def test_too_large_error_reads_in_chinese() -> None:
    error = errors.InputFileTooLargeError("big", filename="a.csv", size_mb=52.4, limit_mb=10.0)

    assert translate_error(error, "zh-CN") == (
        "a.csv 大小为 52.4 MB，超过了 10.0 MB 的上限。请拆分成更小的文件，或在配置中调大 batch.max_upload_mb。"
    )
    assert translate_error(error, "en").startswith("a.csv is 52.4 MB, over the 10.0 MB limit.")


@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_error_without_params_reads_in_language(code: str, language: str) -> None:
    probe = type("ProbeError", (errors.InvalidInputError,), {"code": code})
    error = probe("detail in English")

    message = translate_error(error, language)

    assert "detail in English" not in message
    assert message == STRINGS[f"error.{code}"][language]


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_canned_reply_error_names_failures(language: str) -> None:
    error = errors.CannedReplyError("no model answered", failures="m: 503 ×2")

    message = translate_error(error, language)

    assert "m: 503 ×2" in message
    assert message == STRINGS["error.canned_reply+failures"][language].format(failures="m: 503 ×2")


def test_unclosed_quote_error_names_lines() -> None:
    error = errors.UnclosedQuoteError("runaway quote", filename="batch.csv", line=4, end_line=7)

    english = translate_error(error, "en")
    chinese = translate_error(error, "zh-CN")

    assert english.startswith("batch.csv: the quote that opens on line 4 is not closed")
    assert "lines 4 to 7" in english
    assert '""' in english
    assert "第 4 行开始的引号没有在字段结尾处闭合" in chinese
    assert "第 4 至 7 行" in chinese
    assert '（""）' in chinese


@pytest.mark.parametrize(
    ("prompts", "skipped", "language", "expected"),
    [
        (2, 1, "en", "2 prompts read (csv, utf-8). 1 row with an empty prompt was skipped."),
        (1, 2, "en", "1 prompt read (csv, utf-8). 2 rows with an empty prompt were skipped."),
        (2, 1, "zh-CN", "已读取 2 条提示词（csv，utf-8）。有 1 行的提示词为空，已跳过。"),
        (3, 0, "en", "3 prompts read (csv, utf-8)."),
    ],
)
def test_parsed_summary_counts_rows(prompts: int, skipped: int, language: str, expected: str) -> None:
    rows = tuple(PromptRow(str(number), f"prompt {number}") for number in range(prompts))
    parsed = ParsedInput(rows, "utf-8", "csv", skipped_blank=skipped)

    assert parsed_summary(parsed, language) == expected


def test_empty_preset_name_reads_in_chinese(tmp_path: Path) -> None:
    store = PresetStore.from_settings(PresetsSettings(data_dir=tmp_path))

    with pytest.raises(errors.PresetNameError) as caught:
        store.save("", {"temperature": 0.5})

    assert translate_error(caught.value, "zh-CN") == "预设名称为空或无效。请输入 1 到 64 个可打印字符作为名称。"
    assert translate_error(caught.value, "en") == (
        "The preset name is empty or invalid. Enter a name of 1 to 64 printable characters."
    )


def test_shipped_preset_name_is_named_as_taken(tmp_path: Path) -> None:
    store = PresetStore.from_settings(PresetsSettings(data_dir=tmp_path))

    with pytest.raises(errors.PresetNameError) as caught:
        store.save("Code", {"temperature": 0.5})

    assert translate_error(caught.value, "zh-CN") == "名称“Code”已被内置预设使用。请换一个名称。"


def test_too_many_grid_values_names_limit() -> None:
    with pytest.raises(errors.GridError) as caught:
        parse_grid_values("0.1, 0.2, 0.3", "temperature", 0.0, 2.0, max_values=2)

    assert translate_error(caught.value, "zh-CN") == "temperature 有 3 个取值，超过了允许的 2 个。请删掉一些取值。"


def test_empty_job_id_reads_in_chinese() -> None:
    router, _ = scripted_router()
    manager = JobManager(router, BatchSettings())

    with pytest.raises(errors.JobNotFoundError) as caught:
        manager.get("  ")

    assert translate_error(caught.value, "zh-CN") == (
        "未填写任务编号。请输入任务开始时显示的编号，或从“你的任务”中选择。"
    )
