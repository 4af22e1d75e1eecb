"""Batch input files: CSV and JSONL parsing, encodings and the errors for bad files."""

from __future__ import annotations

import pytest

from workbench.errors import (
    InputEncodingError,
    InputFileEmptyError,
    InputFileTooLargeError,
    InputFormatError,
    NoPromptColumnError,
    UnclosedQuoteError,
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


# A quote opened on line 4 and never closed: without a check, lines 5 to 7 become part of row 3's prompt.
UNCLOSED_QUOTE_CSV = (
    b"id,prompt,expected\n"
    b"1,What is 2+2?,4\n"
    b"2,,empty\n"
    b'3,"unclosed quote, here\n'
    b"4,=cmd|calc,x\n"
    b"5,SLOW slow one,\n"
    b"6,E503 failing,\n"
)


def test_unclosed_quote_is_rejected_with_lines() -> None:
    with pytest.raises(UnclosedQuoteError) as caught:
        parse_prompts(UNCLOSED_QUOTE_CSV, "batch.csv", max_bytes=LIMIT)

    assert caught.value.params == {"filename": "batch.csv", "line": 4, "end_line": 7}
    assert "line 4" in str(caught.value)
    assert '""' in str(caught.value)


@pytest.mark.parametrize(("data", "line", "end_line"), [
    # Closed by the quote of a later quoted cell, which is then followed by more text.
    (b'id,prompt,expected\n1,"runaway, here\n2,plain,x\n3,"quoted, fine",y\n4,last,z\n', 2, 4),
    # Closed at the end of the last row, after taking in two rows.
    (b'id,prompt,expected\n1,first,a\n2,"runaway\n3,second,b\n4,third,c"\n\n', 3, 5),
    # Opened in the header.
    (b'id,"prompt,expected\n1,first,a\n2,second,b\n', 1, 3),
])  # fmt: skip
def test_runaway_quote_is_rejected_with_lines(data: bytes, line: int, end_line: int) -> None:
    with pytest.raises(UnclosedQuoteError) as caught:
        parse_prompts(data, "runaway.csv", max_bytes=LIMIT)

    assert caught.value.params["line"] == line
    assert caught.value.params["end_line"] == end_line


def test_multiline_quoted_prompts_are_kept() -> None:
    # Line breaks, lines with as many commas as a row, and "" inside quotes are all legitimate, on the last row too.
    data = (
        b"id,prompt,expected\r\n"
        b'1,"Summarise:\r\nApples, pears, plums\r\nand more",fruit\r\n'
        b"2,plain one,x\r\n"
        b'3,"Say ""hi"",\nthen 1,2,3",hi\r\n'
        b'4,"Last row:\na, b, c\nd, e, f",end\r\n'
    )

    parsed = parse_prompts(data, "multiline.csv", max_bytes=LIMIT)

    assert [row.row_id for row in parsed.rows] == ["1", "2", "3", "4"]
    assert parsed.rows[0].prompt == "Summarise:\r\nApples, pears, plums\r\nand more"
    assert parsed.rows[0].expected == "fruit"
    assert parsed.rows[2].prompt == 'Say "hi",\nthen 1,2,3'
    assert parsed.rows[3].prompt == "Last row:\na, b, c\nd, e, f"
    assert parsed.rows[3].expected == "end"


def test_two_column_multiline_prompt_at_end_is_kept() -> None:
    data = b'prompt,expected\nfirst,a\n"Translate:\nHello, world"\n'

    parsed = parse_prompts(data, "two.csv", max_bytes=LIMIT)

    assert [row.prompt for row in parsed.rows] == ["first", "Translate:\nHello, world"]


def test_doubled_quote_after_sniffed_sample_is_read() -> None:
    # The parser sniffs only the first 8192 characters, and with no "" there the sniffer guesses doublequote off.
    filler = b"".join(b"%d,prompt %d,x\n" % (number, number) for number in range(1, 1001))
    data = b"id,prompt,expected\n" + filler + b'1001,"Say ""hi""\nplease",hi\n'

    parsed = parse_prompts(data, "late_quotes.csv", max_bytes=LIMIT)

    assert len(parsed.rows) == 1001
    assert parsed.rows[-1].prompt == 'Say "hi"\nplease'
    assert parsed.rows[-1].expected == "hi"


@pytest.mark.parametrize(("data", "note"), [
    (b"prompt\nfirst\n\n   \nsecond\n", "1 row with an empty prompt skipped"),
    (b"prompt\nfirst\n  \n   \nsecond\n", "2 rows with an empty prompt skipped"),
])  # fmt: skip
def test_skipped_rows_note_uses_plural(data: bytes, note: str) -> None:
    parsed = parse_prompts(data, "p.csv", max_bytes=LIMIT)

    assert parsed.notes == (note,)
