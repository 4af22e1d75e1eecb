"""Parse an OpenAI chat-completions request body into a `ChatRequest`.

Every rejection is a `BadRequestError` (400) whose `param` names the field at
fault, in OpenAI's dotted form such as `messages[1].content[0].image_url.url`.
Parameters Parley cannot honour (tools, several choices, log probabilities)
are rejected by name instead of being dropped silently.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from backends.errors import BadRequestError
from backends.request_json import check_unicode, decode_json
from backends.types import ChatRequest, ImagePart, Message, Part, Role, SamplingParams, TextPart
from config import describe_input, format_key_path

# Image types a data URL may carry; the image pipeline converts them further.
# Every type the pipeline decodes; it identifies the bytes itself, whatever the declared type.
IMAGE_MIME_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/webp", "image/gif", "image/heic", "image/heif", "image/bmp", "image/tiff", "image/avif"}
)
_MIME_ALIASES = {"image/jpg": "image/jpeg"}

_ROLES: dict[str, Role] = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}

# Parameters Parley does not implement; a request that sets one gets a 400.
_UNSUPPORTED = {
    "tools": "tool calls",
    "tool_choice": "tool calls",
    "functions": "function calls",
    "function_call": "function calls",
    "logprobs": "log probabilities",
    "top_logprobs": "log probabilities",
    "logit_bias": "logit bias",
    "audio": "audio output",
    "prediction": "predicted outputs",
}


class _StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: StrictBool = False


class _Body(BaseModel):
    """The top-level fields Parley reads; other OpenAI fields are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: StrictBool = False
    stream_options: _StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    seed: int | None = None
    stop: str | list[str] | None = Field(default=None)
    user: str | None = None
    n: int | None = Field(default=None, ge=1)
    response_format: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """A chat request plus the wire options that only the gateway needs."""

    chat: ChatRequest
    stream: bool
    include_usage: bool


def parse_chat_body(raw: bytes, *, bypass_cache: bool, language: str = "en") -> ParsedRequest:
    """Parse a request body; raises BadRequestError naming the field at fault."""
    data = decode_json(raw, "the request body")
    if not isinstance(data, dict):
        raise BadRequestError(
            f"the request body must be a JSON object, not {type(data).__name__}",
            fix='Send an object such as {"model": "...", "messages": [...]}.',
        )

    check_unicode(data)
    _reject_unsupported(data)
    try:
        body = _Body.model_validate(data)
    except ValidationError as exc:
        raise _bad_field(exc) from exc
    if body.n not in (None, 1):
        raise BadRequestError(f"n={body.n} is not supported", fix="Send n=1 or leave it out.", param="n")

    messages = tuple(_parse_message(item, index) for index, item in enumerate(body.messages))

    params = SamplingParams(
        temperature=body.temperature,
        top_p=body.top_p,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
        seed=body.seed,
        stop=_parse_stop(body.stop),
    )
    chat = ChatRequest(
        messages=messages, model=body.model, params=params, bypass_cache=bypass_cache, user=body.user, language=language
    )
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return ParsedRequest(chat=chat, stream=body.stream, include_usage=include_usage)


def _reject_unsupported(data: Mapping[str, Any]) -> None:
    for name, feature in _UNSUPPORTED.items():
        value = data.get(name)
        if not value:
            continue
        raise BadRequestError(
            f"{feature} ({name}) are not supported by Parley",
            fix=f"Leave {name} out of the request.",
            param=name,
        )

    response_format = data.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") not in (None, "text"):
        raise BadRequestError(
            f"response_format type {response_format.get('type')!r} is not supported",
            fix='Leave response_format out or send {"type": "text"}.',
            param="response_format.type",
        )


def _bad_field(exc: ValidationError) -> BadRequestError:
    first = exc.errors()[0]
    param = format_key_path(tuple(first["loc"]))
    missing = first["type"] == "missing"
    detail = f"the field {param} is missing" if missing else f"{param}: {first['msg']}{describe_input(first.get('input'))}"
    return BadRequestError(detail, fix=f"Fix {param} in the request body.", param=param)


def _parse_stop(stop: str | list[str] | None) -> tuple[str, ...] | None:
    if stop is None:
        return None
    sequences = (stop,) if isinstance(stop, str) else tuple(stop)
    return tuple(item for item in sequences if item) or None


def _parse_message(item: dict[str, Any], index: int) -> Message:
    where = f"messages[{index}]"
    role_name = item.get("role")
    role = _ROLES.get(role_name) if isinstance(role_name, str) else None
    if role is None:
        raise BadRequestError(
            f"{where}.role {role_name!r} is not supported",
            fix="Use one of the roles system, developer, user, assistant.",
            param=f"{where}.role",
        )

    content = item.get("content")
    if content is None and role == "assistant":
        return Message(role=role, parts=(TextPart(""),))
    if isinstance(content, str):
        return Message(role=role, parts=(TextPart(content),))
    if not isinstance(content, list):
        raise BadRequestError(
            f"{where}.content must be a string or a list of content parts",
            fix='Send "content": "text" or a list of {"type": "text"} and {"type": "image_url"} parts.',
            param=f"{where}.content",
        )

    parts = tuple(_parse_part(part, f"{where}.content[{number}]", role) for number, part in enumerate(content))
    return Message(role=role, parts=parts)


def _parse_part(part: Any, where: str, role: Role) -> Part:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("text", "refusal") and isinstance(part, dict):
        text = part.get(kind)
        if not isinstance(text, str):
            raise BadRequestError(f"{where}.{kind} must be a string", fix="Send the text as a string.", param=f"{where}.{kind}")
        return TextPart(text)

    if kind == "image_url" and isinstance(part, dict):
        if role != "user":
            raise BadRequestError(
                f"{where}: images are accepted in user messages only, not in {role} messages",
                fix="Move the image into a user message.",
                param=where,
            )
        image_url = part.get("image_url")
        url = image_url.get("url") if isinstance(image_url, dict) else image_url
        if not isinstance(url, str):
            raise BadRequestError(
                f"{where}.image_url.url is missing", fix='Send {"image_url": {"url": "data:image/png;base64,..."}}.', param=f"{where}.image_url.url"
            )
        return decode_data_url(url, f"{where}.image_url.url")

    raise BadRequestError(
        f"{where}: content part type {kind!r} is not supported",
        fix="Send parts of type text or image_url.",
        param=f"{where}.type",
    )


def decode_data_url(url: str, param: str) -> ImagePart:
    """Decode a `data:image/...;base64,...` URL; Parley never fetches a remote URL."""
    if url.startswith(("http://", "https://")):
        raise BadRequestError(
            f"{param}: remote image URLs are not fetched",
            fix="Send the image inline as a data URL: data:image/png;base64,<base64 bytes>.",
            param=param,
        )
    if not url.startswith("data:") or "," not in url:
        raise BadRequestError(
            f"{param} is not a data URL (it starts with {url[:16]!r})",
            fix="Send the image inline as a data URL: data:image/png;base64,<base64 bytes>.",
            param=param,
        )

    header, _, payload = url[5:].partition(",")
    mime, *options = header.split(";")
    mime = _MIME_ALIASES.get(mime.strip().lower(), mime.strip().lower())
    if "base64" not in options:
        raise BadRequestError(f"{param}: the data URL is not base64-encoded", fix="Encode the image bytes as base64 and add ;base64 to the data URL.", param=param)
    if mime not in IMAGE_MIME_TYPES:
        raise BadRequestError(
            f"{param}: image type {mime or '(none)'!r} is not supported",
            fix=f"Send one of: {', '.join(sorted(IMAGE_MIME_TYPES))}.",
            param=param,
        )

    data = _decode_base64(payload, param)
    if not data:
        raise BadRequestError(f"{param}: the image is empty", fix="Send the image bytes in the data URL.", param=param)
    return ImagePart.from_bytes(data, mime)


def _decode_base64(payload: str, param: str) -> bytes:
    try:
        return base64.b64decode(payload, validate=True)
    except binascii.Error:
        pass

    # Some clients wrap base64 in lines or drop the padding; accept both.
    compact = "".join(payload.split())
    compact += "=" * (-len(compact) % 4)
    try:
        return base64.b64decode(compact, validate=True)
    except binascii.Error as exc:
        raise BadRequestError(
            f"{param}: the image data is not valid base64 ({exc})",
            fix="Encode the image bytes with standard base64.",
            param=param,
        ) from exc
