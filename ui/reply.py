"""The state of one streamed reply, and how it shows in the Chatbot.

`Reply.apply()` takes the events of `Router.stream()` one by one; the chat
tab renders `Reply.messages()` whenever it yields to the browser. Reasoning
arrives as `ReasoningDelta` events or as <think>…</think> in the text; both
end up in the collapsible thinking block, never in the answer.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from backends.errors import ParleyError
from backends.types import Event, Finished, Notice, ReasoningDelta, TextDelta, Usage
from ui.formatting import (
    error_title,
    escape_html,
    notice_line,
    served_by,
    stats_line,
    status_message,
    text_block,
    thinking_message,
)
from ui.i18n import translate

ReplyState = Literal["waiting", "streaming", "done", "stopped", "failed"]

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


class ThinkTagSplitter:
    """Route text inside <think>…</think> to reasoning, with tags split across deltas."""

    def __init__(self) -> None:
        self._inside = False
        self._held = ""

    def feed(self, text: str) -> list[tuple[bool, str]]:
        """Return (is_reasoning, text) pieces; a possible partial tag at the end is held back."""
        pieces: list[tuple[bool, str]] = []
        buffer = self._held + text
        self._held = ""
        while buffer:
            tag = THINK_CLOSE if self._inside else THINK_OPEN
            index = buffer.find(tag)
            if index >= 0:
                if index:
                    pieces.append((self._inside, buffer[:index]))
                self._inside = not self._inside
                buffer = buffer[index + len(tag) :]
                continue

            # Hold back a tail that could be the start of the tag.
            keep = 0
            for size in range(min(len(tag) - 1, len(buffer)), 0, -1):
                if tag.startswith(buffer[-size:]):
                    keep = size
                    break
            emitted = buffer[: len(buffer) - keep]
            if emitted:
                pieces.append((self._inside, emitted))
            self._held = buffer[len(buffer) - keep :]
            break
        return pieces

    def flush(self) -> list[tuple[bool, str]]:
        """Return the held-back tail at the end of the stream."""
        held, self._held = self._held, ""
        return [(self._inside, held)] if held else []


@dataclass
class Reply:
    """One reply being streamed: text, reasoning, timings, usage and final state."""

    model: str
    language: str
    started: float = field(default_factory=time.monotonic)
    text: str = ""
    reasoning: str = ""
    state: ReplyState = "waiting"
    first_token_at: float | None = None
    last_token_at: float | None = None
    reasoning_started: float | None = None
    reasoning_ended: float | None = None
    usage: Usage | None = None
    finished: Finished | None = None
    error: ParleyError | None = None
    notices: list[Notice] = field(default_factory=list)
    deltas: int = 0
    # Set by the Stop button; the reply's own event then ends with the stopped state.
    stop_requested: asyncio.Event = field(default_factory=asyncio.Event)
    _splitter: ThinkTagSplitter = field(default_factory=ThinkTagSplitter)

    def apply(self, event: Event) -> None:
        """Fold one event into the reply."""
        now = time.monotonic()
        if isinstance(event, TextDelta):
            self._token(now)
            for is_reasoning, piece in self._splitter.feed(event.text):
                self._add(piece, is_reasoning, now)
        elif isinstance(event, ReasoningDelta):
            self._token(now)
            self._add(event.text, True, now)
        elif isinstance(event, Usage):
            self.usage = event
        elif isinstance(event, Notice):
            self.notices.append(event)
        elif isinstance(event, Finished):
            self._flush(now)
            self.finished = event
            self.state = "stopped" if event.reason == "cancelled" else "done"

    def stop(self) -> None:
        """Mark the reply stopped by the user; the text so far stays."""
        self._flush(time.monotonic())
        if self.state in ("waiting", "streaming"):
            self.state = "stopped"

    def fail(self, error: ParleyError) -> None:
        """Mark the reply failed; the text so far stays."""
        self._flush(time.monotonic())
        self.error = error
        self.state = "failed"

    @property
    def first_token_seconds(self) -> float | None:
        return None if self.first_token_at is None else self.first_token_at - self.started

    @property
    def generation_seconds(self) -> float | None:
        if self.first_token_at is None or self.last_token_at is None:
            return None
        return self.last_token_at - self.first_token_at

    def _token(self, now: float) -> None:
        self.deltas += 1
        if self.first_token_at is None:
            self.first_token_at = now
        self.last_token_at = now
        if self.state == "waiting":
            self.state = "streaming"

    def _add(self, piece: str, is_reasoning: bool, now: float) -> None:
        if is_reasoning:
            if self.reasoning_started is None:
                self.reasoning_started = now
            self.reasoning += piece
            return
        if piece and self.reasoning and self.reasoning_ended is None and piece.strip():
            self.reasoning_ended = now
        self.text += piece

    def _flush(self, now: float) -> None:
        for is_reasoning, piece in self._splitter.flush():
            self._add(piece, is_reasoning, now)
        if self.reasoning and self.reasoning_ended is None:
            self.reasoning_ended = now

    def messages(self) -> list[dict[str, Any]]:
        """Render the reply as Chatbot messages: thinking block, answer, status block."""
        rendered: list[dict[str, Any]] = []
        if self.reasoning.strip():
            seconds = None
            if self.reasoning_started is not None:
                seconds = (self.reasoning_ended or time.monotonic()) - self.reasoning_started
            rendered.append(
                thinking_message(
                    self.reasoning.strip(),
                    done=self.reasoning_ended is not None,
                    seconds=seconds,
                    language=self.language,
                )
            )
        if self.text:
            rendered.append({"role": "assistant", "content": [text_block(escape_html(self.text))]})
        rendered.append(self._status())
        return rendered

    def _status(self) -> dict[str, Any]:
        language = self.language
        notices = [notice_line(notice, language) for notice in self.notices]
        figures = stats_line(
            model=self.model,
            finished=self.finished,
            first_token_seconds=self.first_token_seconds,
            generation_seconds=self.generation_seconds,
            usage=self.usage,
            language=language,
            deltas=self.deltas,
        )

        if self.state == "waiting":
            return status_message(translate("reply.waiting", language, model=self.model), notices, pending=True)
        if self.state == "streaming":
            return status_message(translate("reply.streaming", language, model=self.model), notices, pending=True)

        details: list[str] = []
        if self.finished is not None:
            details.append(served_by(self.finished, language))
        details.extend(notices)

        if self.state == "failed" and self.error is not None:
            details.append(f"{translate('reply.error_detail', language)}: {self.error}")
            return status_message(error_title(self.error, language), details, pending=False)
        if self.state == "stopped":
            return status_message(f"{translate('reply.stopped', language)} · {figures}", details or [figures], pending=False)

        title = figures
        if self.finished is not None and self.finished.reason in ("length", "content_filter"):
            title = f"{translate('reply.' + self.finished.reason, language)} · {figures}"
        if self.finished is not None and self.finished.failures:
            # A fallback stays visible without opening the block.
            title += " · " + translate("reply.served_after", language, failures=", ".join(self.finished.failures))
        return status_message(title, details or [figures], pending=False)
