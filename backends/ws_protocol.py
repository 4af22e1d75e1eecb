"""The Parley WebSocket chat protocol: message types, encoding and mappings.

Both ends use this module: the `websocket` backend (the client) and the
`/ws/chat` endpoint (the server). Every function here is pure: no I/O, no
state. The protocol itself, with an example of every message, is described
in docs/websocket.md.

Client to server: `auth`, `request`, `cancel`.
Server to client: `delta`, `reasoning`, `usage`, `notice`, `done`, `error`.
Every message is one JSON object in one text frame; `type` selects the kind
and `id` ties a message to the request it belongs to.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from backends.errors import (
    BadRequestError,
    InvalidInputError,
    ParleyError,
    RetryableError,
    error_class_for_code,
)
from backends.redaction import Redactor
from backends.request_json import check_unicode, decode_json, has_lone_surrogate
from backends.types import (
    ChatRequest,
    Event,
    Finished,
    FinishReason,
    ImagePart,
    Message,
    Notice,
    NoticeKind,
    Part,
    ReasoningDelta,
    SamplingParams,
    TextDelta,
    TextPart,
    Usage,
)

# Request ids are chosen by the client; the limit keeps them loggable.
MAX_ID_LENGTH = 128
# The types the image pipeline decodes; the server identifies the bytes by content.
IMAGE_MIMES = frozenset(
    {"image/png", "image/jpeg", "image/webp", "image/gif", "image/heic", "image/heif", "image/bmp", "image/tiff", "image/avif"}
)


class _Message(BaseModel):
    # Unknown keys are ignored so that a newer peer can add fields.
    model_config = ConfigDict(extra="ignore", frozen=True)


RequestId = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]


# Client to server.


class AuthMessage(_Message):
    type: Literal["auth"]
    token: str


class TextContentPart(_Message):
    type: Literal["text"]
    text: str


class ImageUrl(_Message):
    url: str


class ImageContentPart(_Message):
    type: Literal["image_url"]
    image_url: ImageUrl


ContentPart = Annotated[TextContentPart | ImageContentPart, Field(discriminator="type")]


class ChatMessage(_Message):
    """One message in the OpenAI chat format: `content` is a string or a list of parts."""

    role: Literal["system", "user", "assistant"]
    content: str | list[ContentPart]


class RequestMessage(_Message):
    type: Literal["request"]
    id: RequestId
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    seed: int | None = None
    stop: str | list[str] | None = None
    bypass_cache: bool = False
    language: str = "en"


class CancelMessage(_Message):
    type: Literal["cancel"]
    id: RequestId


ClientMessage = Annotated[AuthMessage | RequestMessage | CancelMessage, Field(discriminator="type")]


# Server to client.


class DeltaMessage(_Message):
    type: Literal["delta"]
    id: str
    text: str


class ReasoningMessage(_Message):
    type: Literal["reasoning"]
    id: str
    text: str


class UsageMessage(_Message):
    type: Literal["usage"]
    id: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    cached_tokens: int | None = None


class NoticeMessage(_Message):
    type: Literal["notice"]
    id: str
    kind: NoticeKind
    message: str


class DoneMessage(_Message):
    type: Literal["done"]
    id: str
    reason: FinishReason
    served_by: str = ""
    backend: str = ""
    model: str = ""
    cached: bool = False
    failures: list[str] = Field(default_factory=list)


class ErrorMessage(_Message):
    """A failed request (`id` set) or a failed connection (`id` null, for example bad auth)."""

    type: Literal["error"]
    id: str | None
    code: str
    message: str
    retryable: bool
    fix: str = ""
    retry_after: float | None = None
    params: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


ServerMessage = Annotated[
    DeltaMessage | ReasoningMessage | UsageMessage | NoticeMessage | DoneMessage | ErrorMessage,
    Field(discriminator="type"),
]

_CLIENT_ADAPTER: TypeAdapter[AuthMessage | RequestMessage | CancelMessage] = TypeAdapter(ClientMessage)
_SERVER_ADAPTER: TypeAdapter[
    DeltaMessage | ReasoningMessage | UsageMessage | NoticeMessage | DoneMessage | ErrorMessage
] = TypeAdapter(ServerMessage)


def encode(message: _Message | dict[str, Any]) -> str:
    """Encode a message as the text of one WebSocket frame (compact JSON, UTF-8 kept)."""
    data = message.model_dump(mode="json") if isinstance(message, BaseModel) else message
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _load_json(raw: str | bytes) -> Any:
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    return json.loads(text)


def parse_client_message(raw: str | bytes) -> AuthMessage | RequestMessage | CancelMessage:
    """Decode and validate a frame from a client; raises BadRequestError naming the fault.

    The error carries `request_id` in its params when the frame had a usable
    id, so the server can address its error message to that request.
    """
    data = _decode_client_json(raw)
    request_id = data.get("id") if isinstance(data, dict) else None
    # An id with a lone surrogate cannot be sent back in UTF-8, so its error goes out with id null.
    usable = isinstance(request_id, str) and 0 < len(request_id) <= MAX_ID_LENGTH and not has_lone_surrogate(request_id)
    usable_id = request_id if usable else None
    try:
        check_unicode(data)
        return _CLIENT_ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise BadRequestError(
            f"invalid {_describe(data)} message: {_first_problem(exc)}",
            fix="Check the message against the protocol in docs/websocket.md.",
            request_id=usable_id,
        ) from exc
    except BadRequestError as exc:
        exc.params["request_id"] = usable_id
        raise


def _decode_client_json(raw: str | bytes) -> Any:
    """Decode a client frame as the HTTP API decodes a body: the same inputs are rejected."""
    if isinstance(raw, bytes):
        # A binary frame is accepted if it contains UTF-8 JSON; json.loads would also guess UTF-16 or 32.
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequestError(
                f"the message is not valid JSON: {exc}",
                fix="Send each message as one JSON object, UTF-8, in a text frame.",
            ) from exc
    return decode_json(raw, "the message")


def parse_server_message(raw: str | bytes) -> DeltaMessage | ReasoningMessage | UsageMessage | NoticeMessage | DoneMessage | ErrorMessage:
    """Decode and validate a frame from a server; raises RetryableError, since a broken frame is the server's fault."""
    try:
        return _SERVER_ADAPTER.validate_python(_load_json(raw))
    except (ValueError, RecursionError) as exc:
        # ValueError covers bad JSON, bad UTF-8, an integer over Python's digit limit and a ValidationError.
        raise RetryableError(
            f"the server sent an invalid protocol message: {exc}".splitlines()[0],
            fix="Check that the url points at a Parley /ws/chat endpoint of a compatible version.",
        ) from exc


def _describe(data: Any) -> str:
    if isinstance(data, dict) and isinstance(data.get("type"), str):
        return repr(data["type"][:40])
    return "untyped"


def _first_problem(error: ValidationError) -> str:
    problem = error.errors()[0]
    where = ".".join(str(part) for part in problem["loc"]) or "message"
    return f"{where}: {problem['msg']}"


# ChatRequest <-> request message.


def request_to_message(request: ChatRequest, request_id: str, *, model: str | None = None) -> RequestMessage:
    """Build the request message for a ChatRequest; `model` replaces `request.model` (an upstream id)."""
    params = request.params.as_dict()
    return RequestMessage(
        type="request",
        id=request_id,
        model=model or request.model,
        messages=[_chat_message(message) for message in request.messages],
        bypass_cache=request.bypass_cache,
        language=request.language,
        **params,
    )


def _chat_message(message: Message) -> ChatMessage:
    if not message.images and len(message.parts) == 1:
        return ChatMessage(role=message.role, content=message.text_content)
    parts: list[TextContentPart | ImageContentPart] = []
    for part in message.parts:
        if isinstance(part, TextPart):
            parts.append(TextContentPart(type="text", text=part.text))
        else:
            url = f"data:{part.mime};base64,{base64.b64encode(part.data).decode('ascii')}"
            parts.append(ImageContentPart(type="image_url", image_url=ImageUrl(url=url)))
    return ChatMessage(role=message.role, content=parts)


def message_to_request(message: RequestMessage, *, user: str | None = None) -> ChatRequest:
    """Build the ChatRequest that a request message describes; raises InvalidInputError for a bad image.

    Images must be inline `data:` URLs: the server never fetches a URL.
    """
    stop: tuple[str, ...] | None = None
    if isinstance(message.stop, str):
        stop = (message.stop,)
    elif message.stop is not None:
        stop = tuple(message.stop)
    params = SamplingParams(
        temperature=message.temperature,
        top_p=message.top_p,
        max_tokens=message.max_tokens,
        presence_penalty=message.presence_penalty,
        frequency_penalty=message.frequency_penalty,
        seed=message.seed,
        stop=stop,
    )
    return ChatRequest(
        messages=tuple(_message(chat) for chat in message.messages),
        model=message.model,
        params=params,
        bypass_cache=message.bypass_cache,
        user=user,
        language=message.language,
    )


def _message(chat: ChatMessage) -> Message:
    if isinstance(chat.content, str):
        return Message.text(chat.role, chat.content)
    parts: list[Part] = []
    for part in chat.content:
        if isinstance(part, TextContentPart):
            parts.append(TextPart(part.text))
        else:
            parts.append(decode_data_url(part.image_url.url))
    return Message(role=chat.role, parts=tuple(parts))


def decode_data_url(url: str) -> ImagePart:
    """Decode a `data:image/...;base64,...` URL; raises InvalidInputError for anything else."""
    header, comma, payload = url.partition(",")
    if not url.startswith("data:") or not comma or not header.endswith(";base64"):
        shown = url[:60] + ("..." if len(url) > 60 else "")
        raise InvalidInputError(
            f"image_url {shown!r} is not a base64 data URL",
            fix="Send the image inline as data:image/png;base64,... (remote URLs are not fetched).",
        )
    mime = header[len("data:") : -len(";base64")].lower()
    if mime not in IMAGE_MIMES:
        raise InvalidInputError(
            f"image type {mime!r} is not supported",
            fix=f"Send one of: {', '.join(sorted(IMAGE_MIMES))}.",
        )
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInputError("the image data is not valid base64", fix="Encode the image bytes as standard base64.") from exc
    return ImagePart.from_bytes(data, mime)


# Event <-> server message.


def event_to_message(event: Event, request_id: str) -> _Message:
    """Build the server message that carries one event of request `request_id`."""
    if isinstance(event, TextDelta):
        return DeltaMessage(type="delta", id=request_id, text=event.text)
    if isinstance(event, ReasoningDelta):
        return ReasoningMessage(type="reasoning", id=request_id, text=event.text)
    if isinstance(event, Usage):
        return UsageMessage(
            type="usage",
            id=request_id,
            prompt_tokens=event.prompt_tokens,
            completion_tokens=event.completion_tokens,
            reasoning_tokens=event.reasoning_tokens,
            cached_tokens=event.cached_tokens,
        )
    if isinstance(event, Notice):
        return NoticeMessage(type="notice", id=request_id, kind=event.kind, message=event.message)
    return DoneMessage(
        type="done",
        id=request_id,
        reason=event.reason,
        served_by=event.served_by,
        backend=event.backend,
        model=event.model,
        cached=event.cached,
        failures=list(event.failures),
    )


def cancelled_message(request_id: str, backend: str = "", model: str = "", failures: tuple[str, ...] = ()) -> DoneMessage:
    """Build the `done` message that confirms a cancel.

    `backend` and `model` name who served the text so far, and are empty when
    no text arrived. `failures` lists the models that failed before it.
    """
    served_by = Finished(reason="cancelled", backend=backend, model=model, failures=failures).served_by if model else ""
    return DoneMessage(
        type="done",
        id=request_id,
        reason="cancelled",
        served_by=served_by,
        backend=backend,
        model=model,
        failures=list(failures),
    )


def message_to_event(message: DeltaMessage | ReasoningMessage | UsageMessage | NoticeMessage | DoneMessage) -> Event:
    """Build the event a server message carries. `done` keeps the server's backend and model."""
    if isinstance(message, DeltaMessage):
        return TextDelta(message.text)
    if isinstance(message, ReasoningMessage):
        return ReasoningDelta(message.text)
    if isinstance(message, UsageMessage):
        return Usage(
            prompt_tokens=message.prompt_tokens,
            completion_tokens=message.completion_tokens,
            reasoning_tokens=message.reasoning_tokens,
            cached_tokens=message.cached_tokens,
        )
    if isinstance(message, NoticeMessage):
        return Notice(kind=message.kind, message=message.message)
    return Finished(
        reason=message.reason,
        backend=message.backend,
        model=message.model,
        cached=message.cached,
        failures=tuple(message.failures),
    )


# ParleyError <-> error message.


def error_to_message(error: ParleyError, request_id: str | None) -> ErrorMessage:
    """Build the error message for a failure; `request_id` None reports a connection-level failure.

    `message` is the failure without its fix, which travels in `fix`; only
    the JSON-safe `params` are sent.
    """
    where = f"{error.where}: " if error.where else ""
    params = {key: value for key, value in error.params.items() if isinstance(value, str | int | float | bool | None)}
    return ErrorMessage(
        type="error",
        id=request_id,
        code=error.code,
        message=f"{where}{error.detail}",
        retryable=error.retryable,
        fix=error.fix,
        retry_after=error.retry_after,
        params=params,
    )


def message_to_error(message: ErrorMessage, *, backend: str = "", model: str = "", redactor: Redactor | None = None) -> ParleyError:
    """Build the typed error an error message reports, by its code.

    An unknown code becomes a RetryableError when the server marked it
    retryable, otherwise a plain ParleyError, so retry decisions still work.
    `redactor` masks secrets that the server repeats in its text.
    """
    redactor = redactor or Redactor()
    error_class = error_class_for_code(message.code)
    if error_class is ParleyError and message.retryable:
        error_class = RetryableError
    error = error_class(
        f"the server reported: {redactor.redact(message.message)}",
        backend=backend,
        model=model,
        retry_after=message.retry_after,
        fix=redactor.redact(message.fix) if message.fix else None,
    )
    # Set after construction: a param named like a constructor argument must not clash.
    error.params.update({key: redactor.redact(value) if isinstance(value, str) else value for key, value in message.params.items()})
    return error
