"""Parse an OpenAI chat-completions request body into a `ChatRequest`.

Every rejection is a `BadRequestError` (400) whose `param` names the field at
fault, in OpenAI's dotted form such as `messages[1].content[0].image_url.url`.
The fields `/ws/chat` shares (ranges, roles, content parts, the parameters
Parley rejects by name) follow the rules of `backends.chat_fields`; this
module adds the HTTP-only fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from backends.chat_fields import ChatFields, parse_messages, reject_unsupported
from backends.errors import BadRequestError
from backends.request_json import check_unicode, decode_json, field_path
from backends.types import ChatRequest
from config import describe_input


class _StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: StrictBool = False


class _Body(ChatFields):
    """The top-level fields Parley reads; other OpenAI fields are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: StrictBool = False
    stream_options: _StreamOptions | None = None
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
    reject_unsupported(data)
    try:
        body = _Body.model_validate(data)
    except ValidationError as exc:
        raise _bad_field(exc) from exc
    body.check_supported()

    chat = ChatRequest(
        messages=parse_messages(body.messages),
        model=body.model,
        params=body.sampling_params(),
        bypass_cache=bypass_cache,
        user=body.user,
        language=language,
    )
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return ParsedRequest(chat=chat, stream=body.stream, include_usage=include_usage)


def _bad_field(exc: ValidationError) -> BadRequestError:
    first = exc.errors()[0]
    param = field_path(first["loc"])
    missing = first["type"] == "missing"
    detail = f"the field {param} is missing" if missing else f"{param}: {first['msg']}{describe_input(first.get('input'))}"
    return BadRequestError(detail, fix=f"Fix {param} in the request body.", param=param)
