"""The `scripted` backend: deterministic replies for tests, demos and benchmarks.

It is the predictable peer the UI, API and resilience tests stream from: the
reply text, the delays, the reasoning, the usage counts and the failures all
come from the config, and nothing leaves the process.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from backends.base import Backend, find_model
from backends.errors import ERROR_CODES, ConfigError, error_class_for_code
from backends.registry import BackendContext
from backends.settings import BackendSettings, ModelSettings, StrictModel
from backends.types import (
    ChatRequest,
    Event,
    Finished,
    ModelInfo,
    ReasoningDelta,
    TextDelta,
    Usage,
)

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "scripted-echo"
# Requests kept in `ScriptedBackend.received`, so a long demo or benchmark does not grow without bound.
RECEIVED_LIMIT = 1000

# One token is a CJK character or a run of other non-space characters, each
# with the whitespace that follows it, so joining the tokens gives the text back.
_TOKEN = re.compile(r"\s*(?:[\u3000-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]|[^\s\u3000-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]+)\s*")


def split_tokens(text: str) -> list[str]:
    """Split text into word-sized chunks whose concatenation is the text itself."""
    return _TOKEN.findall(text)


class ScriptedReply(StrictModel):
    """One scripted reply.

    `match` is a regular expression searched (case-insensitively) in the last
    user message; a reply without it takes part in the rotation. `error` is an
    error code such as "rate_limited" or "overloaded": the reply raises that
    error after `error_after_chunks` text chunks (0 raises before the first).
    `prompt_tokens` and `completion_tokens` replace the counted usage.
    """

    text: str = ""
    reasoning: str = ""
    match: str | None = None
    finish_reason: Literal["stop", "length", "content_filter"] = "stop"
    error: str | None = None
    error_message: str = "scripted failure"
    error_after_chunks: int = Field(default=0, ge=0)
    retry_after: float | None = Field(default=None, ge=0)
    prompt_tokens: int | None = Field(default=None, ge=0)
    completion_tokens: int | None = Field(default=None, ge=0)

    @field_validator("match")
    @classmethod
    def _check_match(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"match {value!r} is not a valid regular expression: {exc}") from exc
        return value

    @field_validator("error")
    @classmethod
    def _check_error(cls, value: str | None) -> str | None:
        if value is not None and value not in ERROR_CODES:
            raise ValueError(f"error {value!r} is not a known error code; use one of: {', '.join(sorted(ERROR_CODES))}")
        return value


class Settings(BackendSettings):
    """Settings of a `scripted` backend.

    Replies come from `replies` in the config, then from `replies_file`: a
    JSON Lines file with one `ScriptedReply` object per line (blank lines and
    lines starting with "#" are skipped), read once when the backend is created.

    How a reply is picked, per request:
    1. the first reply whose `match` regex is found in the last user message;
    2. otherwise the next reply of the rotation (the replies without `match`),
       in order. With `cycle = true` the rotation starts over after the last
       reply, with `cycle = false` the last reply repeats, so [fail, fail, ok]
       scripts "fails twice, then recovers";
    3. with no reply at all, the last user message is echoed back.

    Delays are in seconds: `first_token_delay` before the first chunk,
    `chunk_delay` between chunks. A chunk is one word, or one character of
    Chinese or Japanese text. Usage counts use the same chunks: prompt tokens
    are the chunks of every message's text plus `image_tokens` per image.
    """

    kind: Literal["scripted"] = "scripted"
    replies: list[ScriptedReply] = Field(default_factory=list)
    replies_file: Path | None = None
    cycle: bool = True
    first_token_delay: float = Field(default=0.0, ge=0)
    chunk_delay: float = Field(default=0.0, ge=0)
    report_usage: bool = True
    image_tokens: int = Field(default=85, ge=0)

    @model_validator(mode="after")
    def _default_model(self) -> Settings:
        if not self.models:
            # Frozen model: set through object.__setattr__ the way pydantic does itself.
            object.__setattr__(self, "models", [ModelSettings(name=DEFAULT_MODEL)])
        return self


def load_replies_file(path: Path) -> list[ScriptedReply]:
    """Read a JSON Lines file of replies; raises ConfigError naming the file and line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"failed to read replies_file {str(path)!r}: {exc.strerror}", fix="Fix the path in the config.") from exc

    replies: list[ScriptedReply] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            replies.append(ScriptedReply.model_validate(json.loads(line)))
        except (json.JSONDecodeError, ValidationError) as exc:
            raise ConfigError(
                f"replies_file {str(path)!r} line {number} is not a valid reply: {exc}",
                fix="Write one JSON object per line with keys such as text, reasoning, match, error.",
            ) from exc
    return replies


class ScriptedBackend(Backend):
    """Streams scripted replies; `received` records the last RECEIVED_LIMIT requests, in order."""

    def __init__(self, settings: Settings, replies: list[ScriptedReply]) -> None:
        self.name = settings.name
        self.settings = settings
        self.received: list[ChatRequest] = []
        self.in_flight = 0
        self._matched = [reply for reply in replies if reply.match is not None]
        self._rotation = self._rotate([reply for reply in replies if reply.match is None])
        self._models = {model.name: model for model in settings.models}

    def _rotate(self, replies: list[ScriptedReply]) -> Iterator[ScriptedReply] | None:
        if not replies:
            return None
        if self.settings.cycle:
            return itertools.cycle(replies)
        return itertools.chain(replies, itertools.repeat(replies[-1]))

    def models(self) -> list[ModelInfo]:
        return [model.info(self.name) for model in self._models.values()]

    def pick_reply(self, request: ChatRequest) -> ScriptedReply:
        """Pick the reply for a request: by `match`, then the rotation, then an echo."""
        last_user = next((m.text_content for m in reversed(request.messages) if m.role == "user"), "")
        for reply in self._matched:
            if reply.match is not None and re.search(reply.match, last_user, re.IGNORECASE):
                return reply
        if self._rotation is not None:
            return next(self._rotation)
        return ScriptedReply(text=last_user)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Event]:
        model = find_model(self._models, request, self.name)
        reply = self.pick_reply(request)
        self.received.append(request)
        del self.received[:-RECEIVED_LIMIT]
        logger.info("scripted reply on %s/%s (%d chars, error=%s)", self.name, model.name, len(reply.text), reply.error)

        self.in_flight += 1
        try:
            async for event in self._play(request, model, reply):
                yield event
        finally:
            self.in_flight -= 1

    async def _play(self, request: ChatRequest, model: ModelSettings, reply: ScriptedReply) -> AsyncIterator[Event]:
        text, finish_reason = _apply_limits(reply, request)
        chunks = split_tokens(text)

        # The first-token delay covers the reasoning too, as a thinking model's would.
        await asyncio.sleep(self.settings.first_token_delay)
        for index, chunk in enumerate(split_tokens(reply.reasoning)):
            if index:
                await asyncio.sleep(self.settings.chunk_delay)
            yield ReasoningDelta(chunk)

        for index, chunk in enumerate(chunks):
            self._fail_if_due(reply, index, model, at_end=False)
            if index or reply.reasoning:
                await asyncio.sleep(self.settings.chunk_delay)
            yield TextDelta(chunk)
        self._fail_if_due(reply, len(chunks), model, at_end=True)

        if self.settings.report_usage:
            yield self._usage(request, reply, chunks)
        yield Finished(reason=finish_reason, backend=self.name, model=model.name)

    def _fail_if_due(self, reply: ScriptedReply, sent_chunks: int, model: ModelSettings, *, at_end: bool) -> None:
        # A count beyond the reply's length fails at its end rather than never.
        if reply.error is None:
            return
        if sent_chunks != reply.error_after_chunks and not (at_end and reply.error_after_chunks > sent_chunks):
            return
        error_class = error_class_for_code(reply.error)
        raise error_class(reply.error_message, backend=self.name, model=model.name, retry_after=reply.retry_after)

    def _usage(self, request: ChatRequest, reply: ScriptedReply, chunks: list[str]) -> Usage:
        prompt = sum(len(split_tokens(m.text_content)) + self.settings.image_tokens * len(m.images) for m in request.messages)
        reasoning = len(split_tokens(reply.reasoning))
        completion = len(chunks) + reasoning
        return Usage(
            prompt_tokens=reply.prompt_tokens if reply.prompt_tokens is not None else prompt,
            completion_tokens=reply.completion_tokens if reply.completion_tokens is not None else completion,
            reasoning_tokens=reasoning if reply.reasoning else None,
        )


def _apply_limits(reply: ScriptedReply, request: ChatRequest) -> tuple[str, Literal["stop", "length", "content_filter"]]:
    """Cut the reply at the first stop sequence and at max_tokens, as a model would."""
    text = reply.text
    for stop in request.params.stop or ():
        if stop and stop in text:
            text = text[: text.index(stop)]

    limit = request.params.max_tokens
    if limit is not None:
        chunks = split_tokens(text)
        if len(chunks) > limit:
            return "".join(chunks[:limit]), "length"
    return text, reply.finish_reason


def create(settings: BackendSettings, context: BackendContext) -> Backend:
    assert isinstance(settings, Settings), f"expected scripted Settings, got {type(settings).__name__}"
    replies = list(settings.replies)
    if settings.replies_file is not None:
        replies.extend(load_replies_file(settings.replies_file))
    return ScriptedBackend(settings, replies)
