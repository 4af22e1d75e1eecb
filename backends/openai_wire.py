"""The OpenAI chat completions wire format: request bodies out, usage and finish reasons in.

Pure functions without I/O, shared by the streamed and the one-body paths of
the `openai` backend.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import orjson

from backends.types import FinishReason, ImagePart, Message, TextPart, Usage

# Parley sends no tools, so a tool-call finish ends the reply like "stop". "eos",
# "end_turn" and "max_tokens" are what some non-OpenAI servers send.
_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "eos": "stop",
    "end_turn": "stop",
    "tool_calls": "stop",
    "function_call": "stop",
    "length": "length",
    "max_tokens": "length",
    "content_filter": "content_filter",
}


def encode_request(
    messages: Sequence[Message],
    *,
    upstream: str,
    params: dict[str, Any],
    streaming: bool,
    include_usage: bool,
    extra_body: dict[str, Any],
) -> bytes:
    """Encode a chat completion request as JSON bytes.

    `params` override `extra_body`, and model, messages and stream override both.
    """
    body: dict[str, Any] = dict(extra_body)
    body.update(params)
    body["model"] = upstream
    body["messages"] = [_message_payload(message) for message in messages]
    body["stream"] = streaming
    if streaming and include_usage:
        body["stream_options"] = {"include_usage": True}
    return orjson.dumps(body)


def finish_reason_of(raw: Any) -> FinishReason | None:
    """Map an upstream finish_reason to Parley's; None (no reason sent) is "stop", an unknown one returns None."""
    if raw is None:
        return "stop"
    return _FINISH_REASONS.get(str(raw))


def _message_payload(message: Message) -> dict[str, Any]:
    """Encode one turn in the OpenAI format; images become base64 data URLs."""
    if message.role == "assistant" or not message.images:
        # An assistant turn sends its text only: reasoning is never stored in
        # a Message, so it cannot be sent back.
        return {"role": message.role, "content": message.text_content}

    parts: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            parts.append({"type": "image_url", "image_url": {"url": _data_url(part)}})
    return {"role": message.role, "content": parts}


def _data_url(image: ImagePart) -> str:
    return f"data:{image.mime};base64,{base64.b64encode(image.data).decode('ascii')}"


def _count(value: Any) -> int | None:
    return value if type(value) is int and value >= 0 else None


def usage_of(raw: Any) -> Usage:
    """Read token counts; cached tokens come from prompt_tokens_details or DeepSeek's prompt_cache_hit_tokens."""
    if not isinstance(raw, dict):
        return Usage()
    completion_details = raw.get("completion_tokens_details")
    prompt_details = raw.get("prompt_tokens_details")
    reasoning = completion_details.get("reasoning_tokens") if isinstance(completion_details, dict) else None
    cached = prompt_details.get("cached_tokens") if isinstance(prompt_details, dict) else None
    if cached is None:
        cached = raw.get("prompt_cache_hit_tokens")
    return Usage(
        prompt_tokens=_count(raw.get("prompt_tokens")),
        completion_tokens=_count(raw.get("completion_tokens")),
        reasoning_tokens=_count(reasoning),
        cached_tokens=_count(cached),
    )
