"""The clean-up of Whisper's raw text: hallucinations, decoder loops, Chinese script and spacing."""

from __future__ import annotations

import pytest

from multimodal.transcript_text import (
    collapse_repetitions,
    is_hallucination,
    join_cjk,
    remove_hallucinations,
    to_simplified,
)


@pytest.mark.parametrize(
    "sentence",
    [
        "Thanks for watching!",
        "Thank you for watching.",
        "Thank you so much for watching",
        "Please subscribe.",
        "Like and subscribe!",
        "Don't forget to like and subscribe to my channel.",
        "Subtitles by the Amara.org community",
        "请不吝点赞 订阅 转发 打赏支持明镜与点点栏目",
        "字幕由Amara.org社区提供",
        "字幕志願者 李宗盛",
        "谢谢观看",
        "感謝您的收看",
        "中文字幕",
    ],
)
def test_known_hallucination_is_detected(sentence: str) -> None:
    assert is_hallucination(sentence)


@pytest.mark.parametrize(
    "sentence",
    [
        "How do I subscribe to a newsletter?",
        "Thank you.",
        "I watched the talk, thanks.",
        "我想订阅这个服务。",
        "请帮我写一段字幕的翻译规则",
        "广州市房地产中介协会分析",
    ],
)
def test_real_prompt_is_kept(sentence: str) -> None:
    assert not is_hallucination(sentence)


def test_hallucinated_sentence_removed_from_text() -> None:
    text, removed = remove_hallucinations("Summarize this article. Thanks for watching!")

    assert text == "Summarize this article."
    assert removed == ["Thanks for watching!"]


def test_chinese_credit_removed_from_text() -> None:
    text, removed = remove_hallucinations("帮我总结这篇文章。字幕由Amara.org社区提供")

    assert text == "帮我总结这篇文章。"
    assert removed == ["字幕由Amara.org社区提供"]


@pytest.mark.parametrize(
    ("looped", "expected"),
    [
        ("I'm going to go. I'm going to go. I'm going to go. I'm going to go.", "I'm going to go."),
        ("好的，好的，好的，好的，好的", "好的"),
        ("谢谢谢谢谢谢谢谢谢谢", "谢谢"),
        ("yeah yeah yeah yeah yeah yeah", "yeah"),
    ],
)
def test_decoder_loop_collapses(looped: str, expected: str) -> None:
    assert collapse_repetitions(looped) == expected


@pytest.mark.parametrize("text", ["no no no", "very very very good", "call 10101010 or 1111111111", "哈哈哈"])
def test_short_or_numeric_repeats_are_kept(text: str) -> None:
    assert collapse_repetitions(text) == text


def test_traditional_characters_become_simplified() -> None:
    assert to_simplified("廣州市佛地產中間協會分析") == "广州市佛地产中间协会分析"
    assert to_simplified("Hello, world") == "Hello, world"


def test_spaces_between_chinese_phrases_removed() -> None:
    assert join_cjk("广州市 佛地产 中间协会分析") == "广州市佛地产中间协会分析"
    assert join_cjk("用 Python 写 一个 脚本") == "用 Python 写一个脚本"
