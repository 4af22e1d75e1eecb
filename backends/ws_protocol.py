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

from backends.chat_fields import ChatFields, parse_messages, reject_unsupported
from backends.errors import (
    BadRequestError,
    InvalidInputError,
    ParleyError,
    RetryableError,
    error_class_for_code,
)
from backends.redaction import Redactor
from backends.request_json import check_unicode, decode_json, field_path, has_lone_surrogate
from backends.types import (
    ChatRequest,
    Event,
    Finished,
    FinishReason,
    ImagePart,
    Message,
    Notice,
    NoticeKind,
    ReasoningDelta,
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


class RefusalContentPart(_Message):
    """A refusal an assistant gave earlier, sent back as part of the history."""

    type: Literal["refusal"]
    refusal: str


ContentPart = Annotated[TextContentPart | ImageContentPart | RefusalContentPart, Field(discriminator="type")]


class ChatMessage(_Message):
    """One message in the OpenAI chat format: `content` is a string or a list of parts.

    The shape only; `backends.chat_fields.parse_messages` applies the rules
    both APIs share, such as images in user messages only.
    """

    role: Literal["system", "developer", "user", "assistant"]
    # None only in an assistant message, as OpenAI allows.
    content: str | list[ContentPart] | None = None


class RequestMessage(_Message, ChatFields):
    """A chat request: the fields and ranges of `POST /v1/chat/completions` (see `ChatFields`) plus these."""

    type: Literal["request"]
    id: RequestId
    messages: list[ChatMessage] = Field(min_length=1)
    bypass_cache: bool = False
    # The languages of the notices and canned replies Parley writes (backends.layers.messages.LANGUAGES).
    language: Literal["en", "zh-CN"] = "en"


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


class ErrorDetail(_Message):
    """A failure as the client sees it: the fields of an `error` message, also carried by a `done` with reason "error"."""

    code: str
    message: str
    retryable: bool
    fix: str = ""
    retry_after: float | None = None
    params: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


class DoneMessage(_Message):
    type: Literal["done"]
    id: str
    reason: FinishReason
    served_by: str = ""
    backend: str = ""
    model: str = ""
    cached: bool = False
    failures: list[str] = Field(default_factory=list)
    # Set when `reason` is "error", and only then: the failure that cut the reply off after its text began.
    error: ErrorDetail | None = None


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
        # The HTTP API's rules for the chat fields, in the same order: the
        # parameters Parley rejects by name first, then the field ranges.
        if isinstance(data, dict) and data.get("type") == "request":
            reject_unsupported(data)
        message = _CLIENT_ADAPTER.validate_python(data)
        if isinstance(message, RequestMessage):
            message.check_supported()
    except ValidationError as exc:
        problem = exc.errors()[0]
        location = problem["loc"]
        if isinstance(data, dict) and location[:1] == (data.get("type"),):
            # The union puts the message type first; the field path starts after it.
            location = location[1:]
        param = field_path(location)
        error = BadRequestError(
            f"invalid {_describe(data)} message: {param or 'message'}: {problem['msg']}",
            fix="Check the message against the protocol in docs/websocket.md.",
            request_id=usable_id,
        )
        if param:
            error.params["param"] = param
        raise error from exc
    except BadRequestError as exc:
        exc.params["request_id"] = usable_id
        raise
    return message


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
        # Any other language gets English notices, as in backends.layers.messages.
        language="zh-CN" if request.language == "zh-CN" else "en",
        **params,
    )


def _chat_message(message: Message) -> ChatMessage:
    if not message.images and len(message.parts) == 1:
        return ChatMessage(role=message.role, content=message.text_content)
    parts: list[TextContentPart | ImageContentPart | RefusalContentPart] = []
    for part in message.parts:
        if isinstance(part, TextPart):
            parts.append(TextContentPart(type="text", text=part.text))
        else:
            url = f"data:{part.mime};base64,{base64.b64encode(part.data).decode('ascii')}"
            parts.append(ImageContentPart(type="image_url", image_url=ImageUrl(url=url)))
    return ChatMessage(role=message.role, content=parts)


def message_to_request(message: RequestMessage, *, user: str | None = None) -> ChatRequest:
    """Build the ChatRequest that a request message describes; raises BadRequestError naming the field at fault.

    `user`, when given, replaces the message's own `user` field. The messages
    follow the HTTP API's rules (`backends.chat_fields.parse_messages`), so
    images must be inline `data:` URLs: the server never fetches a URL.
    """
    messages = parse_messages([chat.model_dump(mode="python") for chat in message.messages])
    return ChatRequest(
        messages=messages,
        model=message.model,
        params=message.sampling_params(),
        bypass_cache=message.bypass_cache,
        user=user if user is not None else message.user,
        language=message.language,
    )


def decode_data_url(url: str) -> ImagePart:
    """Decode a `data:image/...;base64,...` URL; raises InvalidInputError for anything else.

    NOTE: `/ws/chat` no longer calls this: it decodes images with
    `backends.chat_fields.decode_data_url`, as the HTTP API does. Only
    tests/test_websocket_backend.py still uses it.
    """
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


def event_to_message(event: Event, request_id: str, *, error: ParleyError | None = None) -> _Message:
    """Build the server message that carries one event of request `request_id`.

    `error` is the failure behind a Finished with reason "error"; the `done`
    message carries it in its `error` field.
    """
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
        error=error_detail(error) if error is not None else None,
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
    """Build the error message for a failure; `request_id` None reports a connection-level failure."""
    return ErrorMessage(type="error", id=request_id, **dict(error_detail(error)))


def error_detail(error: ParleyError) -> ErrorDetail:
    """Describe a failure for the client.

    `message` is the failure without its fix, which travels in `fix`; only
    the JSON-safe `params` are sent.
    """
    where = f"{error.where}: " if error.where else ""
    params = {key: value for key, value in error.params.items() if isinstance(value, str | int | float | bool | None)}
    return ErrorDetail(
        code=error.code,
        message=f"{where}{error.detail}",
        retryable=error.retryable,
        fix=error.fix,
        retry_after=error.retry_after,
        params=params,
    )


def message_to_error(
    message: ErrorMessage | ErrorDetail, *, backend: str = "", model: str = "", redactor: Redactor | None = None
) -> ParleyError:
    """Build the typed error that an error message, or the `error` of a done message, reports, by its code.

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
