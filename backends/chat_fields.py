"""The chat request fields both APIs accept, with one set of rules.

`POST /v1/chat/completions` (`api.openai_request`) and the `request` message
of `/ws/chat` (`backends.ws_protocol`) carry the same OpenAI-style fields.
Their ranges, the roles and content parts of `messages`, and the parameters
Parley rejects by name all live here, so both APIs accept and reject the same
values. Every rejection is a `BadRequestError` (400) whose `param`
names the field at fault in OpenAI's form, such as `messages[1].content[0].text`.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field

from backends.errors import BadRequestError
from backends.types import ImagePart, Message, Part, Role, SamplingParams, TextPart

# Every type the image pipeline decodes; it identifies the bytes itself, whatever the declared type.
IMAGE_MIME_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/webp", "image/gif", "image/heic", "image/heif", "image/bmp", "image/tiff", "image/avif"}
)
_MIME_ALIASES = {"image/jpg": "image/jpeg"}

# OpenAI's newer models call the system role "developer", so Parley reads it as system.
ROLES: dict[str, Role] = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}

# Integer bounds, so that a value out of range gets a 400 here instead of an error or an
# overflow upstream: a seed is a signed 64-bit integer and a token count a signed 32-bit one.
# NOTE: llama-cpp-python passes the seed to llama.cpp as a uint32, and ctypes keeps only
# the low 32 bits of a larger one: on the local backend two seeds 2**32 apart sample alike.
SEED_MIN = -(2**63)
SEED_MAX = 2**63 - 1
MAX_TOKENS_MAX = 2**31 - 1

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
# Values of those parameters that turn the feature off, so they are accepted.
_OFF_VALUES = {"tool_choice": "none", "function_call": "none"}


class ChatFields(BaseModel):
    """The fields of a chat request that both APIs share, with their ranges.

    A subclass adds `messages` and its API's own fields; `parse_messages`
    reads the messages, so both APIs apply the same role and content rules.
    """

    model: str = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS_MAX)
    # OpenAI's newer name for max_tokens; it wins when both are set.
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS_MAX)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    seed: int | None = Field(default=None, ge=SEED_MIN, le=SEED_MAX)
    stop: str | list[str] | None = None
    n: int | None = Field(default=None, ge=1)
    user: str | None = None

    def check_supported(self) -> None:
        """Reject valid values Parley cannot honour: it returns one choice."""
        if self.n not in (None, 1):
            raise BadRequestError(f"n={self.n} is not supported", fix="Send n=1 or leave it out.", param="n")

    def sampling_params(self) -> SamplingParams:
        return SamplingParams(
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_completion_tokens or self.max_tokens,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            seed=self.seed,
            stop=_parse_stop(self.stop),
        )


def reject_unsupported(data: Mapping[str, Any]) -> None:
    """Reject a request that sets a parameter Parley does not implement, naming it.

    An empty value (`"tools": []`, null) or an off value (`"tool_choice": "none"`)
    requests no tool use, so it is accepted.
    """
    for name, feature in _UNSUPPORTED.items():
        value = data.get(name)
        if not value or value == _OFF_VALUES.get(name):
            continue
        raise BadRequestError(
            f"{feature} ({name}) are not supported by Parley",
            fix=f"Leave {name} out of the request.",
            param=name,
        )

    response_format = data.get("response_format")
    if isinstance(response_format, Mapping) and response_format.get("type") not in (None, "text"):
        raise BadRequestError(
            f"response_format type {response_format.get('type')!r} is not supported",
            fix='Leave response_format out or send {"type": "text"}.',
            param="response_format.type",
        )


def _parse_stop(stop: str | list[str] | None) -> tuple[str, ...] | None:
    if stop is None:
        return None
    sequences = (stop,) if isinstance(stop, str) else tuple(stop)
    return tuple(item for item in sequences if item) or None


def parse_messages(items: Sequence[Mapping[str, Any]]) -> tuple[Message, ...]:
    """Build the messages of a request from their JSON form; raises BadRequestError naming the field."""
    return tuple(_parse_message(item, index) for index, item in enumerate(items))


def _parse_message(item: Mapping[str, Any], index: int) -> Message:
    where = f"messages[{index}]"
    role_name = item.get("role")
    role = ROLES.get(role_name) if isinstance(role_name, str) else None
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
    # A str payload outside ASCII raises a plain ValueError, not binascii.Error.
    try:
        return base64.b64decode(payload, validate=True)
    except ValueError:
        pass

    # Some clients wrap base64 in lines or drop the padding; accept both.
    compact = "".join(payload.split())
    compact += "=" * (-len(compact) % 4)
    try:
        return base64.b64decode(compact, validate=True)
    except ValueError as exc:
        raise BadRequestError(
            f"{param}: the image data is not valid base64 ({exc})",
            fix="Encode the image bytes with standard base64.",
            param=param,
        ) from exc
