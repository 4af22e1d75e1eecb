"""Every workbench error code has a message in both languages that formats with its params."""

from __future__ import annotations

import string

import pytest

from ui.i18n import STRINGS, translate_error
from ui.workbench_i18n import WORKBENCH_STRINGS
from workbench import errors
from workbench.compare import CompareInputError

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
