"""Batch input files: CSV and JSONL parsing, encodings and the errors for bad files."""

from __future__ import annotations

import pytest

from workbench.errors import (
    InputEncodingError,
    InputFileEmptyError,
    InputFileTooLargeError,
    InputFormatError,
    NoPromptColumnError,
)
from workbench.inputs import PromptRow, parse_prompts

LIMIT = 10_000_000

CHINESE_CSV = "编号,提示词,参考答案\n1,请介绍一下北京的历史,北京是中国的首都\n2,今天天气怎么样？,晴\n"


def test_csv_with_prompt_and_expected() -> None:
    data = b'prompt,expected\nWhat is 2+2?,4\n"Say ""hi"", then stop",hi\n'

    parsed = parse_prompts(data, "prompts.csv", max_bytes=LIMIT)

    assert parsed.rows == (
        PromptRow("2", "What is 2+2?", "4"),
        PromptRow("3", 'Say "hi", then stop', "hi"),
    )
    assert parsed.file_format == "csv"
    assert parsed.encoding == "utf-8"


def test_gbk_csv_is_detected_and_decoded() -> None:
    parsed = parse_prompts(CHINESE_CSV.encode("gbk"), "表格.csv", max_bytes=LIMIT)

    assert parsed.rows[0] == PromptRow("1", "请介绍一下北京的历史", "北京是中国的首都")
    assert parsed.rows[1].prompt == "今天天气怎么样？"
    assert parsed.encoding.lower() in ("gbk", "gb2312", "gb18030")
    assert any("decoded as" in note for note in parsed.notes)


def test_utf8_bom_and_semicolons() -> None:
    data = "\ufeffQuestion;Answer\nHow are you?;fine\nWhere?;here\n".encode()

    parsed = parse_prompts(data, "excel.csv", max_bytes=LIMIT)

    assert [row.prompt for row in parsed.rows] == ["How are you?", "Where?"]
    assert [row.expected for row in parsed.rows] == ["fine", "here"]


def test_utf16_excel_text_is_decoded() -> None:
    data = "prompt\tanswer\n你好\t您好\n".encode("utf-16")

    parsed = parse_prompts(data, "unicode.txt", max_bytes=LIMIT)

    assert parsed.rows == (PromptRow("2", "你好", "您好"),)


def test_blank_prompts_are_skipped_and_counted() -> None:
    parsed = parse_prompts(b"prompt\nfirst\n\n   \nsecond\n", "p.csv", max_bytes=LIMIT)

    assert [row.prompt for row in parsed.rows] == ["first", "second"]
    assert parsed.skipped_blank == 1


def test_csv_without_prompt_column_names_columns() -> None:
    with pytest.raises(NoPromptColumnError) as caught:
        parse_prompts(b"text,label\nhello,1\n", "data.csv", max_bytes=LIMIT)

    assert caught.value.params["columns"] == "'text', 'label'"
    assert "prompt" in caught.value.fix


@pytest.mark.parametrize("data", [b"", b"   \n\n", b"prompt\n", b"prompt\n  \n"])
def test_empty_file_is_rejected(data: bytes) -> None:
    with pytest.raises(InputFileEmptyError):
        parse_prompts(data, "empty.csv", max_bytes=LIMIT)


def test_50_mb_file_is_rejected_with_limit() -> None:
    data = b"prompt\n" + b"x" * (50 * 1024 * 1024)

    with pytest.raises(InputFileTooLargeError) as caught:
        parse_prompts(data, "huge.csv", max_bytes=LIMIT)

    assert caught.value.params["limit_mb"] == 10.0
    assert caught.value.params["size_mb"] == 52.4
    assert "batch.max_upload_mb" in caught.value.fix


def test_undecodable_bytes_are_rejected() -> None:
    data = bytes(range(256)) * 4

    with pytest.raises(InputEncodingError) as caught:
        parse_prompts(data, "noise.csv", max_bytes=LIMIT)

    assert caught.value.params["filename"] == "noise.csv"
    assert "UTF-8" in caught.value.fix


def test_jsonl_objects_and_strings() -> None:
    data = '{"id": "a", "prompt": "hi", "expected": "hello"}\n\n"just a prompt"\n{"问题": "你好"}\n'.encode()

    parsed = parse_prompts(data, "p.jsonl", max_bytes=LIMIT)

    assert parsed.rows == (
        PromptRow("a", "hi", "hello"),
        PromptRow("3", "just a prompt", None),
        PromptRow("4", "你好", None),
    )
    assert parsed.file_format == "jsonl"


def test_jsonl_bad_line_is_named() -> None:
    data = b'{"prompt": "ok"}\n{"prompt": broken}\n'

    with pytest.raises(InputFormatError) as caught:
        parse_prompts(data, "p.jsonl", max_bytes=LIMIT)

    assert caught.value.params["line"] == 2


def test_jsonl_line_without_prompt_key_is_named() -> None:
    with pytest.raises(NoPromptColumnError) as caught:
        parse_prompts(b'{"prompt": "ok"}\n{"text": "no"}\n', "p.jsonl", max_bytes=LIMIT)

    assert caught.value.params["line"] == 2


def test_jsonl_array_line_is_rejected() -> None:
    with pytest.raises(InputFormatError, match="line 1"):
        parse_prompts(b'[1, 2]\n', "p.jsonl", max_bytes=LIMIT)


def test_format_is_sniffed_without_extension() -> None:
    parsed = parse_prompts(b'{"prompt": "hi"}\n', "upload", max_bytes=LIMIT)

    assert parsed.file_format == "jsonl"
    assert parsed.rows[0].prompt == "hi"


def test_long_csv_cell_is_accepted() -> None:
    data = b'prompt\nshort\n"' + b"x" * 200_000 + b'"\n'

    parsed = parse_prompts(data, "long.csv", max_bytes=LIMIT)

    assert len(parsed.rows) == 2
    assert len(parsed.rows[1].prompt) == 200_000



def test_short_gbk_file_is_not_read_as_korean() -> None:
    data = "提示词,答案\n你好,ok\n再见,ok\n".encode("gbk")

    parsed = parse_prompts(data, "short.csv", max_bytes=LIMIT)

    assert parsed.encoding == "gb18030"
    assert [row.prompt for row in parsed.rows] == ["你好", "再见"]


def test_korean_file_stays_korean() -> None:
    data = "prompt,answer\n안녕하세요 반갑습니다,네\n오늘 날씨가 좋네요,맞아요\n".encode("cp949")

    parsed = parse_prompts(data, "korean.csv", max_bytes=LIMIT)

    assert [row.prompt for row in parsed.rows] == ["안녕하세요 반갑습니다", "오늘 날씨가 좋네요"]
