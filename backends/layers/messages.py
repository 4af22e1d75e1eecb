"""The texts the layers show users in notices and canned replies, in English and Simplified Chinese."""

from __future__ import annotations

from typing import Any

LANGUAGES = ("en", "zh-CN")

_TEXTS: dict[str, dict[str, str]] = {
    "retrying": {
        "en": "{model} failed ({error}); retrying in {delay:.1f} s (attempt {attempt} of {attempts}).",
        "zh-CN": "{model} 出错（{error}），{delay:.1f} 秒后重试（第 {attempt} 次，共 {attempts} 次）。",
    },
    "falling_back": {
        "en": "{model} failed ({error}); trying {next} instead.",
        "zh-CN": "{model} 出错（{error}），改用 {next}。",
    },
    "falling_back_canned": {
        "en": "{model} failed ({error}); no model could answer, showing a prepared reply.",
        "zh-CN": "{model} 出错（{error}），没有可用的模型，显示预设回复。",
    },
    "cached": {
        "en": "Served from the response cache.",
        "zh-CN": "来自回复缓存。",
    },
    "interrupted": {
        "en": "The reply from {model} was interrupted ({error}); the text so far is kept.",
        "zh-CN": "{model} 的回复中断了（{error}），已保留收到的文字。",
    },
    "canned_reply": {
        "en": "Sorry, no model can answer right now. Please try again in a few minutes.",
        "zh-CN": "抱歉，目前没有模型可以回答。请过几分钟再试。",
    },
}


def text(key: str, language: str, **values: Any) -> str:
    """Return the text `key` in `language` (English when the language is unknown), filled with `values`."""
    by_language = _TEXTS[key]
    template = by_language.get(language) or by_language["en"]
    return template.format(**values)
