"""Turn a stream of events into OpenAI's wire format: SSE chunks or one completion object.

Chunks are written as pre-encoded bytes: the constant head of every chunk is
encoded once per stream, so each delta costs one `json.dumps` of its text.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator
from typing import Any

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from api.errors import internal_error, sse_error
from backends.errors import ParleyError, StreamIncompleteError
from backends.types import Event, Finished, Notice, ReasoningDelta, TextDelta, Usage

logger = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"

# OpenAI has no "cancelled" finish reason, and a reply stopped on purpose ended normally.
_FINISH_REASONS = {"stop": "stop", "length": "length", "content_filter": "content_filter", "cancelled": "stop"}


def served_by_label(finished: Finished) -> str:
    """Return who served a reply, such as "local/smollm2 (cached)", for a header or comment."""
    return f"{finished.served_by} (cached)" if finished.cached else finished.served_by


def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage_object(usage: Usage | None) -> dict[str, Any]:
    """Build OpenAI's usage object; counts the backend did not report are null."""
    usage = usage or Usage()
    total = None
    if usage.prompt_tokens is not None and usage.completion_tokens is not None:
        total = usage.prompt_tokens + usage.completion_tokens

    result: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": total,
    }
    if usage.reasoning_tokens is not None:
        result["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    if usage.cached_tokens is not None:
        result["prompt_tokens_details"] = {"cached_tokens": usage.cached_tokens}
    return result


def interrupted_error(finished: Finished, outcome: str, *, fix: str | None = None) -> StreamIncompleteError:
    """Build the error for a reply that ended with reason "error" after its first token.

    The message is English, as every API error is. The user's-language
    notice of the fallback layer goes out as an SSE comment instead.
    """
    # The fallback layer's last failure entry describes this failure ("model: label").
    cause = finished.failures[-1].removeprefix(f"{finished.model}: ") if finished.failures else "stream_incomplete"
    return StreamIncompleteError(
        f"the reply from {finished.model} was interrupted ({cause}); {outcome}",
        model=finished.model,
        backend=finished.backend,
        fix=fix,
    )


class ChunkEncoder:
    """Encodes the `chat.completion.chunk` events of one stream."""

    def __init__(self, model: str) -> None:
        head = json.dumps(
            {"id": new_completion_id(), "object": "chat.completion.chunk", "created": int(time.time()), "model": model},
            ensure_ascii=False,
            separators=(",", ":"),
        )
        self._head = b"data: " + head[:-1].encode() + b',"choices":'
        self._role = b'"role":"assistant",'

    def _take_role(self) -> bytes:
        # The first delta of a stream carries the role, as OpenAI's does.
        role, self._role = self._role, b""
        return role

    def delta(self, field: bytes, text: str) -> bytes:
        return (
            self._head
            + b'[{"index":0,"delta":{'
            + self._take_role()
            + field
            + json.dumps(text, ensure_ascii=False).encode()
            + b'},"logprobs":null,"finish_reason":null}]}\n\n'
        )

    def finish(self, reason: str) -> bytes:
        role = self._take_role().rstrip(b",")
        return self._head + b'[{"index":0,"delta":{' + role + b'},"logprobs":null,"finish_reason":"' + reason.encode() + b'"}]}\n\n'

    def usage(self, usage: Usage | None) -> bytes:
        return self._head + b'[],"usage":' + json.dumps(usage_object(usage)).encode() + b"}\n\n"


_CONTENT = b'"content":'
_REASONING = b'"reasoning_content":'


def sse_comment(text: str) -> bytes:
    """Encode a comment line; OpenAI clients skip comments, curl users see them."""
    return b": " + " ".join(text.split()).encode() + b"\n\n"


async def chain_first(first: tuple[Event, ...], rest: AsyncGenerator[Event, None]) -> AsyncGenerator[Event, None]:
    """Put back the events read ahead of the stream; closing the result closes `rest`."""
    try:
        for event in first:
            yield event
        async for event in rest:
            yield event
    finally:
        await rest.aclose()


async def encode_sse(events: AsyncGenerator[Event, None], encoder: ChunkEncoder, *, include_usage: bool) -> AsyncGenerator[bytes, None]:
    """Encode events as SSE until `Finished`; an error after the start becomes an error event.

    The stream ends with `data: [DONE]` only when the reply finished. After
    an error the client gets the partial text, then the error object, and no
    `[DONE]`. Closing this generator closes `events`, which cancels the
    upstream request.
    """
    usage: Usage | None = None
    try:
        async for event in events:
            if isinstance(event, TextDelta):
                if event.text:
                    yield encoder.delta(_CONTENT, event.text)
            elif isinstance(event, ReasoningDelta):
                if event.text:
                    yield encoder.delta(_REASONING, event.text)
            elif isinstance(event, Usage):
                usage = event
            elif isinstance(event, Notice):
                yield sse_comment(f"notice {event.kind}: {event.message}")
            elif isinstance(event, Finished):
                if event.reason == "error":
                    raise interrupted_error(event, "the text before this error was sent")
                yield encoder.finish(_FINISH_REASONS.get(event.reason, "stop"))
                if include_usage:
                    yield encoder.usage(usage)
                yield sse_comment(f"served by {served_by_label(event)}")
                yield DONE
                return
        raise StreamIncompleteError("the stream ended without a finish event")
    except ParleyError as exc:
        logger.warning("stream failed after it started: %s", exc)
        yield sse_error(exc)
    except Exception as exc:
        logger.exception("stream failed after it started with an unexpected error")
        yield sse_error(internal_error(exc))
    finally:
        await events.aclose()


async def collect_completion(events: AsyncGenerator[Event, None], model: str) -> tuple[dict[str, Any], Finished]:
    """Read a whole reply into OpenAI's `chat.completion` object; raises ParleyError on failure."""
    text: list[str] = []
    reasoning: list[str] = []
    usage: Usage | None = None
    finished: Finished | None = None
    try:
        async for event in events:
            if isinstance(event, TextDelta):
                text.append(event.text)
            elif isinstance(event, ReasoningDelta):
                reasoning.append(event.text)
            elif isinstance(event, Usage):
                usage = event
            elif isinstance(event, Finished):
                finished = event
                break
    finally:
        await events.aclose()

    if finished is None:
        raise StreamIncompleteError("the stream ended without a finish event")
    if finished.reason == "error":
        # An OpenAI client that did not stream gets a completion or an error, never half a reply.
        raise interrupted_error(
            finished,
            "a request without stream returns no partial text",
            fix="Retry it, or set stream to true to receive the text as it arrives.",
        )

    message: dict[str, Any] = {"role": "assistant", "content": "".join(text), "refusal": None}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    body = {
        "id": new_completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": _FINISH_REASONS.get(finished.reason, "stop")}
        ],
        "usage": usage_object(usage),
    }
    return body, finished


class EventStreamResponse(StreamingResponse):
    """An SSE response that cancels its stream as soon as the client disconnects.

    Starlette's StreamingResponse notices a disconnect only when its next write
    fails (ASGI spec 2.4), so a stream waiting on a slow upstream would keep
    the upstream request open. This one listens for the disconnect all along
    and always closes the body generator, which closes the upstream request.
    """

    media_type = "text/event-stream"

    def __init__(self, content: AsyncGenerator[bytes, None], headers: dict[str, str] | None = None) -> None:
        super().__init__(content, headers=headers, media_type=self.media_type)
        self._generator = content

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        completed = False
        try:
            async with anyio.create_task_group() as group:

                async def stream_then_stop() -> None:
                    nonlocal completed
                    await self.stream_response(send)
                    completed = True
                    group.cancel_scope.cancel()

                group.start_soon(stream_then_stop)
                await self.listen_for_disconnect(receive)
                # uvicorn reports a disconnect as soon as the last body is sent,
                # which can win the race against the cancel above.
                if not completed:
                    logger.info("client disconnected mid-stream; cancelling the upstream request")
                group.cancel_scope.cancel()
        except* OSError:
            logger.info("client connection failed mid-stream; cancelling the upstream request")
        finally:
            with anyio.CancelScope(shield=True):
                await self._generator.aclose()
