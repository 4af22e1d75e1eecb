"""UI strings, language choice, error translation and the text helpers of the chat."""

from __future__ import annotations

import pytest

from backends import errors
from backends.errors import ERROR_CODES, InputTooLargeError, NotFoundError, ParleyError, RateLimitedError
from backends.types import Finished, Usage
from ui.formatting import escape_html, served_by, stats_line, unescape_html
from backends.layers.errors import CircuitOpenError
from ui.i18n import STRINGS, build_i18n, language_from_header, translate, translate_error
from ui.reply import ThinkTagSplitter


def test_every_string_has_english_and_chinese() -> None:
    missing = [key for key, entry in STRINGS.items() if not entry.get("en") or not entry.get("zh-CN")]
    assert missing == []


def test_every_error_code_has_both_translations() -> None:
    for code in ERROR_CODES:
        entry = STRINGS.get(f"error.{code}")
        assert entry is not None, f"no message for error code {code}"
        assert entry["en"] and entry["zh-CN"], code
        assert entry["en"] != entry["zh-CN"], code


@pytest.mark.parametrize("code", sorted(ERROR_CODES))
def test_translated_error_differs_by_language(code: str) -> None:
    error = errors.error_class_for_code(code)("upstream said no", backend="b", model="m")

    english = translate_error(error, "en")
    chinese = translate_error(error, "zh-CN")

    assert english.startswith("b/m: ")
    assert chinese.startswith("b/m: ")
    assert english != chinese


def test_circuit_open_reads_chinese_with_cause() -> None:
    error = CircuitOpenError("fakeup is skipped for another 24 s after 503", backend="fakeup", endpoint="fakeup", cause="503")

    chinese = translate_error(error, "zh-CN")

    assert chinese.startswith("fakeup: ")
    assert "出现 503 后暂时被跳过" in chinese
    assert "skipped" not in chinese


def test_i18n_tables_select_chinese_for_zh_variants() -> None:
    tables = build_i18n().translations_dict

    for locale in ("zh", "zh-CN", "zh-Hans"):
        assert tables[locale]["chat.stop"] == "停止"
    assert tables["en"]["chat.stop"] == "Stop"


@pytest.mark.parametrize(
    ("header", "language"),
    [
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"),
        ("zh", "zh-CN"),
        ("zh-Hans-CN", "zh-CN"),
        ("en-US,en;q=0.9,zh-CN;q=0.8", "en"),
        ("fr-FR, zh-TW;q=0.5", "zh-CN"),
        ("en;q=0.2, zh;q=0.8", "zh-CN"),
        ("de", "en"),
        ("", "en"),
        (None, "en"),
        ("zh;q=0, en", "en"),
    ],
)
def test_language_from_accept_language(header: str | None, language: str) -> None:
    assert language_from_header(header) == language


def test_error_variant_uses_retry_after() -> None:
    error = RateLimitedError("429", backend="ds", retry_after=2.5)

    assert "2.5 s" in translate_error(error, "en")
    assert "2.5 秒" in translate_error(error, "zh-CN")


def test_error_variant_names_models_and_limit() -> None:
    assert "a, b" in translate_error(NotFoundError("no such model", models="a, b"), "zh-CN")
    assert "20 MB" in translate_error(InputTooLargeError("too big", limit="20 MB"), "en")


def test_error_with_unknown_code_keeps_english_detail_and_fix() -> None:
    class StrangeError(ParleyError):
        code = "strange_thing"

    error = StrangeError("the thing broke", fix="Do the other thing.")

    assert translate_error(error, "en") == "the thing broke. Do the other thing."
    assert translate_error(error, "zh-CN") == "出错了（strange_thing）：the thing broke。Do the other thing."


def test_translate_rejects_unknown_key() -> None:
    with pytest.raises(KeyError):
        translate("no.such.key", "en")


J = "\u2060"


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("a <b>x</b> & y", f"a <{J}b>x<{J}/b> & y"),
        ("keep `<div>` as code, escape <i>", f"keep `<div>` as code, escape <{J}i>"),
        ("```html\n<script>alert(1)</script>\n```\nafter <x>", f"```html\n<script>alert(1)</script>\n```\nafter <{J}x>"),
        ("unclosed\n```\n<still code", "unclosed\n```\n<still code"),
        ("``a ` b`` <z>", f"``a ` b`` <{J}z>"),
        ("lone ` tick <a", f"lone ` tick <{J}a"),
        ("<!-- hidden --> <?php", f"<{J}!-- hidden --> <{J}?php"),
        ("1 < 2 and &lt; stay", "1 < 2 and &lt; stay"),
        ("> quote stays a quote", "> quote stays a quote"),
    ],
)
def test_escape_html_outside_code_round_trips(raw: str, escaped: str) -> None:
    assert escape_html(raw) == escaped
    assert unescape_html(escaped) == raw


def test_think_splitter_handles_tags_split_across_deltas() -> None:
    splitter = ThinkTagSplitter()
    pieces = []
    for delta in ["<th", "ink>plan", " it</thi", "nk>Answer <", "b>"]:
        pieces.extend(splitter.feed(delta))
    pieces.extend(splitter.flush())

    reasoning = "".join(text for is_reasoning, text in pieces if is_reasoning)
    answer = "".join(text for is_reasoning, text in pieces if not is_reasoning)
    assert reasoning == "plan it"
    assert answer == "Answer <b>"


def test_served_by_names_failures_before_it() -> None:
    finished = Finished(reason="stop", backend="local", model="smollm2", failures=("deepseek-chat: 503 ×3",))

    assert served_by(finished, "en") == "Served by local/smollm2 after deepseek-chat: 503 ×3"
    assert served_by(finished, "zh-CN") == "由 local/smollm2 提供 此前失败：deepseek-chat: 503 ×3"


def test_stats_line_has_figures_and_cached_mark() -> None:
    line = stats_line(
        model="m",
        finished=Finished(reason="stop", backend="b", model="m", cached=True),
        first_token_seconds=0.1234,
        generation_seconds=2.0,
        usage=Usage(prompt_tokens=12, completion_tokens=41),
        language="en",
    )

    assert line == "m · b · cached · first token 123 ms · 20.0 tokens/s · 12 prompt + 41 completion tokens"
