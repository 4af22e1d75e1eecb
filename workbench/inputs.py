"""Batch input files: CSV or JSONL of prompts, optionally with expected answers.

Spreadsheets exported on Chinese systems are often GBK (or GB18030) rather
than UTF-8, so text that is not UTF-8 is decoded with the encoding
charset-normalizer detects.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from charset_normalizer import from_bytes

from workbench.errors import (
    InputEncodingError,
    InputFileEmptyError,
    InputFileTooLargeError,
    InputFormatError,
    NoPromptColumnError,
    UnclosedQuoteError,
)

logger = logging.getLogger(__name__)

# Column (or JSON key) names accepted for each field, compared case-insensitively.
PROMPT_NAMES = ("prompt", "input", "question", "query", "提示词", "提示", "问题", "输入")
EXPECTED_NAMES = ("expected", "expected_answer", "answer", "reference", "期望", "期望答案", "答案", "参考答案")
ID_NAMES = ("id", "编号")

# Delimiters a spreadsheet may export; semicolons come from locales with decimal commas.
DELIMITERS = ",;\t"


@dataclass(frozen=True, slots=True)
class PromptRow:
    """One prompt of a batch; `row_id` is the file's id column or the 1-based row number."""

    row_id: str
    prompt: str
    expected: str | None = None


@dataclass(frozen=True, slots=True)
class ParsedInput:
    rows: tuple[PromptRow, ...]
    encoding: str
    file_format: str
    skipped_blank: int = 0
    notes: tuple[str, ...] = field(default=())


def decode_text(data: bytes, filename: str) -> tuple[str, str]:
    """Decode file bytes as UTF-8 (with or without BOM), else as the detected encoding.

    Returns the text and the encoding name. Raises InputEncodingError when no
    encoding fits.
    """
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass

    best = from_bytes(data).best()
    if best is None or best.encoding is None:
        raise InputEncodingError(
            f"{filename} is not UTF-8 and its encoding could not be detected", filename=filename
        )
    text, encoding = str(best), best.encoding
    if _looks_misread_chinese(text):
        try:
            text, encoding = data.decode("gb18030"), "gb18030"
        except UnicodeDecodeError:
            pass
    logger.info("decoded %s as %s", filename, encoding)
    return text, encoding


def _is_hangul(char: str) -> bool:
    return "\uac00" <= char <= "\ud7a3" or "\u1100" <= char <= "\u11ff" or "\u3130" <= char <= "\u318f"


def _looks_misread_chinese(text: str) -> bool:
    """Return whether the text mixes Hangul with Han characters, a sign of GBK bytes read as a Korean code page.

    charset_normalizer (3.5) picks cp949 for short GBK files such as a two-row CSV; real Korean text is
    almost all Hangul, so a mix is far more likely a Chinese file.
    """
    hangul = any(_is_hangul(char) for char in text)
    han = any("\u4e00" <= char <= "\u9fff" for char in text)
    return hangul and han


def _find_column(header: list[str], names: tuple[str, ...]) -> int | None:
    folded = [name.strip().casefold() for name in header]
    for name in names:
        if name.casefold() in folded:
            return folded.index(name.casefold())
    return None


def _opening_line(first: int, cells: list[str]) -> tuple[int, str]:
    """Return the line where the first multi-line cell of a record starts, and that cell."""
    line = first
    for cell in cells:
        if "\n" in cell:
            return line, cell
        line += cell.count("\n")
    return first, ""


def _check_multiline_record(
    lines: list[str],
    first: int,
    last: int,
    cells: list[str],
    dialect: type[csv.Dialect] | csv.Dialect,
    record_delimiters: int,
    file_end: int,
    filename: str,
) -> None:
    """Raise UnclosedQuoteError when the record on lines `first` to `last` (1-based) has a runaway quoted field.

    A quoted field whose quote is never closed, or is closed by a quote that
    is followed by more text (a strict parse rejects both), took in lines that
    were meant as rows of their own. A field closed only on the last line of
    the file is a runaway too when its record has fewer cells than the header
    and it takes in two or more lines. Each of those lines must have as many
    delimiters as a row has (`record_delimiters`). A field with line breaks
    that passes these checks is a multi-line cell.
    """
    opening, cell = _opening_line(first, cells)
    runaway = False
    record = io.StringIO("".join(lines[first - 1 : last]), newline="")
    try:
        for _ in csv.reader(record, dialect, strict=True):
            pass
    except csv.Error:
        runaway = True

    if not runaway and record_delimiters and last >= file_end and len(cells) <= record_delimiters:
        # NOTE: a runaway quote closed at the end of the file that takes in only one row is not
        # detected, because it looks the same as a last prompt with a line break and a delimiter.
        taken_in = cell.splitlines()[1:]
        runaway = len(taken_in) >= 2 and all(line.count(dialect.delimiter) >= record_delimiters for line in taken_in)

    if runaway:
        raise UnclosedQuoteError(
            f"{filename}: the quote that opens on line {opening} is not closed where its field ends, "
            f"so lines {opening} to {last} were read as one field",
            filename=filename,
            line=opening,
            end_line=last,
        )


def _parse_csv(text: str, filename: str) -> tuple[list[PromptRow], int]:
    # The csv module rejects cells over 128 KiB by default; a long prompt that fits the
    # upload limit is valid. field_size_limit is process-wide, so it only ever grows here.
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))

    sample = text[:8192]
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, delimiters=DELIMITERS)
    except csv.Error:
        dialect = csv.excel
    # The sniffer reports doublequote False when its sample has no "" in a quoted field, but
    # spreadsheets write a quote inside a quoted field as "", so that is how it is read. sniff()
    # returns a new class on each call, and csv.excel already has doublequote True.
    if dialect.escapechar is None and not dialect.doublequote:
        dialect.doublequote = True

    # The physical lines, split as the reader splits them, to name the lines of a runaway quote.
    lines = io.StringIO(text, newline="").readlines()
    file_end = len(lines)
    while file_end and not lines[file_end - 1].strip():
        file_end -= 1

    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    try:
        header = next(reader, None)
        if header is None or not any(cell.strip() for cell in header):
            raise InputFileEmptyError(f"{filename} has no header row", filename=filename)
        if reader.line_num > 1:
            _check_multiline_record(lines, 1, reader.line_num, header, dialect, 0, file_end, filename)

        prompt_column = _find_column(header, PROMPT_NAMES)
        if prompt_column is None:
            found = ", ".join(repr(cell) for cell in header[:20])
            raise NoPromptColumnError(
                f"{filename} has no prompt column; its columns are {found}", filename=filename, columns=found
            )
        expected_column = _find_column(header, EXPECTED_NAMES)
        id_column = _find_column(header, ID_NAMES)

        rows: list[PromptRow] = []
        skipped = 0
        record_start = reader.line_num + 1
        for cells in reader:
            line = reader.line_num
            if line > record_start:
                _check_multiline_record(
                    lines, record_start, line, cells, dialect, len(header) - 1, file_end, filename
                )
            record_start = line + 1
            if not cells:
                continue
            prompt = cells[prompt_column].strip() if prompt_column < len(cells) else ""
            if not prompt:
                skipped += 1
                continue
            expected = cells[expected_column] if expected_column is not None and expected_column < len(cells) else None
            row_id = cells[id_column].strip() if id_column is not None and id_column < len(cells) else ""
            rows.append(PromptRow(row_id or str(line), prompt, expected or None))
    except csv.Error as exc:
        raise InputFormatError(
            f"{filename} line {reader.line_num} is not valid CSV: {exc}", filename=filename, line=reader.line_num
        ) from exc
    return rows, skipped


def _parse_jsonl(text: str, filename: str) -> tuple[list[PromptRow], int]:
    rows: list[PromptRow] = []
    skipped = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputFormatError(
                f"{filename} line {number} is not valid JSON: {exc.msg}", filename=filename, line=number
            ) from exc

        # A bare JSON string is a prompt on its own.
        if isinstance(item, str):
            item = {"prompt": item}
        if not isinstance(item, dict):
            raise InputFormatError(
                f"{filename} line {number} is a JSON {type(item).__name__}, not an object with a prompt key",
                filename=filename,
                line=number,
            )

        keys = list(item)
        prompt_key = _find_column(keys, PROMPT_NAMES)
        if prompt_key is None:
            raise NoPromptColumnError(
                f"{filename} line {number} has no prompt key; its keys are {', '.join(map(repr, keys[:20]))}",
                filename=filename,
                columns=", ".join(keys[:20]) or "(none)",
                line=number,
            )
        prompt = str(item[keys[prompt_key]] or "").strip()
        if not prompt:
            skipped += 1
            continue
        expected_key = _find_column(keys, EXPECTED_NAMES)
        expected = item[keys[expected_key]] if expected_key is not None else None
        id_key = _find_column(keys, ID_NAMES)
        row_id = str(item[keys[id_key]]) if id_key is not None else str(number)
        rows.append(PromptRow(row_id, prompt, None if expected is None else str(expected)))
    return rows, skipped


def detect_format(text: str, filename: str) -> str:
    """Return "jsonl" or "csv" from the file extension, else from the first character."""
    suffix = Path(filename).suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".tsv", ".txt"):
        return "csv"
    return "jsonl" if text.lstrip()[:1] in ('{', '"') else "csv"


def parse_prompts(data: bytes, filename: str, *, max_bytes: int) -> ParsedInput:
    """Parse an uploaded batch file; raises an InvalidInputError subclass that names what to change."""
    if len(data) > max_bytes:
        raise InputFileTooLargeError(
            f"{filename} is {len(data) / 1e6:.1f} MB, over the {max_bytes / 1e6:.1f} MB limit",
            filename=filename,
            size_mb=round(len(data) / 1e6, 1),
            limit_mb=round(max_bytes / 1e6, 1),
        )
    if not data.strip():
        raise InputFileEmptyError(f"{filename} is empty", filename=filename)

    text, encoding = decode_text(data, filename)
    file_format = detect_format(text, filename)
    parse = _parse_jsonl if file_format == "jsonl" else _parse_csv
    rows, skipped = parse(text, filename)
    if not rows:
        raise InputFileEmptyError(f"{filename} has no rows with a prompt", filename=filename)

    notes = []
    if encoding != "utf-8":
        notes.append(f"decoded as {encoding}")
    if skipped:
        notes.append(f"{skipped} {'row' if skipped == 1 else 'rows'} with an empty prompt skipped")
    logger.info("parsed %s: %d prompts, %s, %s", filename, len(rows), file_format, encoding)
    return ParsedInput(tuple(rows), encoding, file_format, skipped, tuple(notes))
