"""Request and event types shared by every backend, layer and caller.

A caller builds a `ChatRequest`, hands it to `Backend.stream()` and reads a
stream of `Event`s back. Failures are raised as `ParleyError` subclasses
(see `backends.errors`), never sent as events.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]

FinishReason = Literal["stop", "length", "content_filter", "cancelled", "error"]

# Notice kinds a layer may emit; callers show them to the user as they arrive.
NoticeKind = Literal["retrying", "falling_back", "cached", "interrupted", "info"]


@dataclass(frozen=True, slots=True)
class TextPart:
    text: str


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image ready to send: bytes already prepared by the image pipeline."""

    data: bytes
    mime: str
    sha256: str

    @classmethod
    def from_bytes(cls, data: bytes, mime: str) -> ImagePart:
        return cls(data=data, mime=mime, sha256=hashlib.sha256(data).hexdigest())


Part = TextPart | ImagePart


@dataclass(frozen=True, slots=True)
class Message:
    """One turn of a conversation.

    Reasoning produced by a model is never stored here: it is shown to the
    user but must not be sent back to the API in later turns.
    """

    role: Role
    parts: tuple[Part, ...]

    @classmethod
    def text(cls, role: Role, text: str) -> Message:
        return cls(role=role, parts=(TextPart(text),))

    @property
    def text_content(self) -> str:
        """The concatenated text parts, images left out."""
        return "".join(part.text for part in self.parts if isinstance(part, TextPart))

    @property
    def images(self) -> tuple[ImagePart, ...]:
        return tuple(part for part in self.parts if isinstance(part, ImagePart))


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Sampling parameters. None means the caller omitted the parameter.

    An omitted parameter is not sent upstream and is distinct from any
    default value, so the cache key can tell them apart.
    """

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return only the parameters the caller set, with `stop` as a list."""
        result: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if value is None:
                continue
            result[item.name] = list(value) if item.name == "stop" else value
        return result


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A request for one streamed reply.

    `model` is the public model name a user picks (for example
    "deepseek-chat" or "smollm2"); the router resolves it to a backend and
    that backend's upstream model id. `language` is the user's UI language
    ("en" or "zh-CN") for messages that layers write themselves, such as a
    canned fallback reply. `allow_canned_reply` False makes a fallback chain
    that fails everywhere raise its error instead of ending in the canned
    reply; the API gateway sets it from `server.canned_reply_for_api`.
    """

    messages: tuple[Message, ...]
    model: str
    params: SamplingParams = field(default_factory=SamplingParams)
    bypass_cache: bool = False
    user: str | None = None
    language: str = "en"
    allow_canned_reply: bool = True


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as reported by the backend; None where it did not report one."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    cached_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Notice:
    """Something a layer did that the user should see, such as a retry."""

    kind: NoticeKind
    message: str
    # For "falling_back": the model tried next, so a caller can tell who serves the reply
    # before its Finished event; empty when the canned reply comes next.
    model: str = ""
    # For "falling_back": every failure so far, as in `Finished.failures`.
    failures: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Finished:
    """The last event of a successful or deliberately ended stream.

    `backend` and `model` name who served the reply; `failures` lists what
    failed before it (for example "deepseek-chat: 503 ×3"), so a reply can
    say "served by local/smollm2 after deepseek-chat: 503 ×3".
    """

    reason: FinishReason
    backend: str = ""
    model: str = ""
    cached: bool = False
    failures: tuple[str, ...] = ()

    @property
    def served_by(self) -> str:
        who = f"{self.backend}/{self.model}" if self.backend else self.model
        if self.failures:
            return f"{who} after {', '.join(self.failures)}"
        return who


Event = TextDelta | ReasoningDelta | Usage | Notice | Finished


@dataclass(frozen=True, slots=True)
class Capabilities:
    streaming: bool = True
    vision: bool = False
    reasoning: bool = False
    max_context: int = 8192
    # Sampling parameters the model ignores or rejects (DeepSeek's reasoner
    # ignores temperature and top_p, for example); callers show them as such.
    ignored_params: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A model a user can pick: its public name, where it lives, what it can do."""

    name: str
    backend: str
    upstream: str
    capabilities: Capabilities = field(default_factory=Capabilities)


@dataclass(frozen=True, slots=True)
class Health:
    backend: str
    reachable: bool
    detail: str = ""
