"""Clean-up of Whisper's raw text: known hallucinations, repetition loops, Chinese script.

Whisper was trained on subtitled video, so on noise, music or the tail of a
recording it tends to write the credits and sign-offs of that video
("Thanks for watching", "字幕由 Amara.org 社区提供"). The sentences below are
removed wherever they appear; real prompts rarely consist of them.
"""

from __future__ import annotations

import re
from functools import lru_cache

from opencc import OpenCC

# Matched with re.search against one sentence, lowercased, in Simplified
# characters, with spaces and punctuation removed.
HALLUCINATION_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(pattern)
    for pattern in (
        # English sign-offs and subtitle credits.
        r"^(thanks|thankyou)(so|very)?(much)?(for|4)watching",
        r"^(please)?(dont)?(forget)?(to)?(like|subscribe)(and|&)?(subscribe|like|share|comment)*(tomy|toour|tothe)?(channel)?$",
        r"(subtitles|captions|transcription|transcribed|subtitled)(by|from)",
        r"amaraorg",
        r"castingwords",
        # Chinese sign-offs and subtitle credits.
        r"请不吝点赞",
        r"(点赞|订阅|转发|打赏)(订阅|转发|打赏|点赞|支持)+",
        r"明镜与点点",
        r"字幕(由|提供|制作|志愿者|组|君)",
        r"^(中文)?字幕$",
        r"(谢谢|感谢)(大家|您|你们)?的?(收看|观看|观赏)",
        r"欢迎(订阅|收看)",
        r"优优独播剧场",
        r"yoyotelevisionseries",
    )
)

# Sentence ends in both scripts; the mark stays with its sentence. A Latin
# full stop ends a sentence only before a space, so "Amara.org" stays whole.
_SENTENCE = re.compile(r".+?(?:[.!?]+(?=\s|$)|[。！？]+|$)", re.DOTALL)
_PUNCTUATION_AND_SPACE = re.compile(r"[\s\W_]+", re.UNICODE)

# A unit of 2..60 characters repeated 4 or more times in a row, optionally
# separated by spaces or punctuation: the greedy decoder's loop.
_REPEATED_UNIT = re.compile(r"(\S.{1,59}?)(?:[\s,，、.。!！?？;；]*\1){3,}", re.DOTALL)
# One character repeated 8 or more times ("哈哈哈哈哈哈哈哈", "!!!!!!!!").
_REPEATED_CHAR = re.compile(r"(\S)\1{7,}")

_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef"
_SPACE_BETWEEN_CJK = re.compile(rf"(?<=[{_CJK}])\s+(?=[{_CJK}])")


@lru_cache(maxsize=1)
def _t2s() -> OpenCC:
    # Loading the conversion tables takes about 0.1 s; one converter serves all threads
    # because convert() keeps no state between calls.
    return OpenCC("t2s")


def to_simplified(text: str) -> str:
    """Convert Traditional Chinese characters to Simplified ones; other text passes through."""
    return str(_t2s().convert(text))


def join_cjk(text: str) -> str:
    """Remove the spaces Whisper puts between Chinese phrases at pauses."""
    return _SPACE_BETWEEN_CJK.sub("", text)


def is_hallucination(sentence: str) -> bool:
    normalized = _PUNCTUATION_AND_SPACE.sub("", to_simplified(sentence).lower())
    if not normalized:
        return False
    return any(pattern.search(normalized) for pattern in HALLUCINATION_PATTERNS)


def remove_hallucinations(text: str) -> tuple[str, list[str]]:
    """Drop the sentences of `text` that are known hallucinations.

    Returns the kept text and the removed sentences (for the log).
    """
    kept: list[str] = []
    removed: list[str] = []
    for match in _SENTENCE.finditer(text):
        sentence = match.group(0)
        if is_hallucination(sentence):
            removed.append(sentence.strip())
        else:
            kept.append(sentence)
    return "".join(kept).strip(), removed


def collapse_repetitions(text: str) -> str:
    """Reduce a phrase repeated 4 or more times in a row (a decoder loop) to one occurrence.

    Units without a letter (such as "10" in "10101010") are kept, since digits
    legitimately repeat.
    """

    def keep_one(match: re.Match[str]) -> str:
        unit = match.group(1)
        if not any(char.isalpha() for char in unit):
            return match.group(0)
        return unit

    text = _REPEATED_UNIT.sub(keep_one, text)
    return _REPEATED_CHAR.sub(keep_one, text)
