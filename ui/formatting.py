"""Text the chat shows around a reply: stats line, served-by, thinking block, errors.

Also the escaping that makes HTML in prompts and replies render as text:
the Chatbot renders Markdown, and raw HTML in Markdown would either render
or be stripped by the sanitizer. `escape_html()` puts an invisible WORD
JOINER (U+2060) after every "<" that could open a tag, comment or
declaration, outside code spans and fenced code blocks (Markdown shows
code as it is). Markdown then sees no tag and shows the "<" as text, and
the edit box shows the text as typed (HTML entities such as "&lt;" would
show there verbatim). The copy button copies the joiners along, invisible.
`unescape_html()` removes them again, so the history read back from the
browser gives the model the original text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from backends.errors import ParleyError
from backends.types import Finished, Notice, Usage
from ui.i18n import translate, translate_error

# A fence line opens or closes a fenced code block: 3+ backticks or tildes,
# indented by at most three spaces.
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CLOSING_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*\r?\n?$")
_BACKTICKS = re.compile(r"`+")
WORD_JOINER = "\u2060"
_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")
_ESCAPED = re.compile("<" + WORD_JOINER)


def _segments(text: str) -> Iterator[tuple[str, bool]]:
    """Split Markdown into (piece, is_code) pieces; the pieces join back to `text`."""
    prose: list[str] = []
    fence: str | None = None
    code: list[str] = []
    for line in text.splitlines(keepends=True):
        match = _FENCE.match(line)
        if fence is None:
            if match:
                yield from _inline_segments("".join(prose))
                prose = []
                fence = match.group(1)
                code = [line]
            else:
                prose.append(line)
            continue

        code.append(line)
        closing = _CLOSING_FENCE.match(line)
        if closing and closing.group(1)[0] == fence[0] and len(closing.group(1)) >= len(fence):
            yield "".join(code), True
            fence = None
            code = []

    if fence is not None:
        # An unclosed fence (a reply still streaming) runs to the end, as in Markdown.
        yield "".join(code), True
    yield from _inline_segments("".join(prose))


def _inline_segments(text: str) -> Iterator[tuple[str, bool]]:
    """Split prose at code spans: a run of N backticks up to the next run of exactly N."""
    position = 0
    cursor = 0
    while True:
        opening = _BACKTICKS.search(text, cursor)
        if opening is None:
            break
        closing = _BACKTICKS.search(text, opening.end())
        while closing is not None and len(closing.group()) != len(opening.group()):
            closing = _BACKTICKS.search(text, closing.end())
        if closing is None:
            # An unmatched run is literal text; look for spans after it.
            cursor = opening.end()
            continue
        if opening.start() > position:
            yield text[position : opening.start()], False
        yield text[opening.start() : closing.end()], True
        position = cursor = closing.end()
    if position < len(text):
        yield text[position:], False


def escape_html(text: str) -> str:
    """Break every possible tag outside code so Markdown shows HTML as text instead of running it."""
    pieces = []
    for piece, is_code in _segments(text):
        pieces.append(piece if is_code else _TAG_START.sub("<" + WORD_JOINER, piece))
    return "".join(pieces)


def unescape_html(text: str) -> str:
    """Reverse `escape_html()`; a text already free of joiners comes back unchanged."""
    pieces = []
    for piece, is_code in _segments(text):
        pieces.append(piece if is_code else _ESCAPED.sub("<", piece))
    return "".join(pieces)


def text_block(text: str) -> dict[str, str]:
    """A Chatbot content block; a dict keeps the text as it is (a bare string gets dedented)."""
    return {"type": "text", "text": text}


def served_by(finished: Finished, language: str) -> str:
    """Say who served a reply, and what failed before it, such as "local/smollm2 after deepseek-chat: 503 ×3"."""
    who = f"{finished.backend}/{finished.model}" if finished.backend else finished.model
    text = translate("reply.served_by", language, who=who)
    if finished.failures:
        text += " " + translate("reply.served_after", language, failures=", ".join(finished.failures))
    return text


def format_speed(completion_tokens: int | None, generation_seconds: float | None) -> str | None:
    """Return tokens per second over the generation window, or None when it is unknown."""
    if not completion_tokens or completion_tokens < 2 or not generation_seconds or generation_seconds <= 0:
        return None
    # The first token opens the window, so N tokens span N - 1 intervals.
    rate = (completion_tokens - 1) / generation_seconds
    return f"{rate:.1f}"


def stats_line(
    *,
    model: str,
    finished: Finished | None,
    first_token_seconds: float | None,
    generation_seconds: float | None,
    usage: Usage | None,
    language: str,
    deltas: int = 0,
) -> str:
    """One line of figures under a reply: model, backend, first token, tokens/s, tokens, cached.

    `deltas` is the number of streamed chunks, used for an estimated speed
    when the backend reported no completion tokens.
    """
    parts: list[str] = []
    if finished is not None and finished.backend:
        parts.append(f"{finished.model or model} · {finished.backend}")
    else:
        parts.append(model)

    if finished is not None and finished.cached:
        parts.append(translate("reply.cached", language))
    if first_token_seconds is not None:
        parts.append(translate("reply.first_token", language, ms=round(first_token_seconds * 1000)))

    completion = usage.completion_tokens if usage is not None else None
    speed = format_speed(completion, generation_seconds)
    if speed is None and completion is None and deltas:
        # Without reported usage (a stopped reply, a server that sends none)
        # the streamed chunks stand in for tokens: an estimate, marked "≈".
        estimate = format_speed(deltas, generation_seconds)
        speed = f"≈{estimate}" if estimate is not None else None
    if speed is not None:
        parts.append(translate("reply.speed", language, rate=speed))
    if usage is not None and usage.prompt_tokens is not None and usage.completion_tokens is not None:
        parts.append(translate("reply.tokens", language, prompt=usage.prompt_tokens, completion=usage.completion_tokens))
    return " · ".join(parts)


def notice_line(notice: Notice, language: str) -> str:
    """A notice as "Retrying: deepseek-chat: 503, attempt 2 of 3"."""
    kind = translate(f"notice.{notice.kind}", language)
    return f"{kind}: {notice.message}" if notice.message else kind


def error_title(error: ParleyError, language: str) -> str:
    """The visible line for a failed reply: the translated error with what to do."""
    return translate("reply.failed", language, message=translate_error(error, language))


def thinking_message(reasoning: str, *, done: bool, seconds: float | None, language: str) -> dict[str, Any]:
    """A collapsible "Thinking" block; open with a spinner while pending, closed when done."""
    metadata: dict[str, Any] = {"title": translate("reply.thinking", language), "status": "done" if done else "pending"}
    if seconds is not None:
        metadata["duration"] = round(seconds, 1)
    return {"role": "assistant", "content": [text_block(escape_html(reasoning))], "metadata": metadata}


def status_message(title: str, details: list[str], *, pending: bool) -> dict[str, Any]:
    """The block under a reply: its title is the stats or state line, its body the details."""
    body = "\n\n".join(escape_html(line) for line in details) if details else escape_html(title)
    return {
        "role": "assistant",
        "content": [text_block(body)],
        "metadata": {"title": title, "status": "pending" if pending else "done"},
    }
