"""The OpenAI-compatible endpoints: `GET /v1/models` and `POST /v1/chat/completions`."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncGenerator, Awaitable
from typing import Any, TypeVar, cast

from fastapi import APIRouter, Request
from starlette.routing import Match
from fastapi.responses import JSONResponse, Response

from api.errors import MethodNotAllowedError
from api.limits import check_chat_request
from api.openai_request import parse_chat_body
from api.openai_stream import (
    ChunkEncoder,
    EventStreamResponse,
    chain_first,
    collect_completion,
    encode_sse,
    served_by_label,
)
from api.services import api_services
from backends.errors import InputTooLargeError, NotFoundError, StreamIncompleteError
from backends.router import Router
from backends.types import ChatRequest, Event, ModelInfo, Notice

logger = logging.getLogger(__name__)

router = APIRouter()

_T = TypeVar("_T")

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

# Not an HTTP status anyone receives: the client is gone. nginx logs the same case as 499.
_CLIENT_CLOSED = 499


class ClientGone(Exception):
    """The client disconnected before the response started."""


def model_object(info: ModelInfo) -> dict[str, Any]:
    """Build OpenAI's model object, plus Parley's `capabilities` of the model."""
    return {
        "id": info.name,
        "object": "model",
        "created": 0,
        "owned_by": info.backend,
        "capabilities": {
            "vision": info.capabilities.vision,
            "reasoning": info.capabilities.reasoning,
            "max_context": info.capabilities.max_context,
            "ignored_params": sorted(info.capabilities.ignored_params),
        },
    }


@router.api_route("/v1/models", methods=["GET", "HEAD"])
async def list_models(request: Request) -> JSONResponse:
    services = api_services(request)
    services.authorize(request)

    data = [model_object(info) for info in services.router.models()]
    return JSONResponse({"object": "list", "data": data})


@router.api_route("/v1/models/{model:path}", methods=["GET", "HEAD"])
async def get_model(request: Request, model: str) -> JSONResponse:
    services = api_services(request)
    services.authorize(request)

    return JSONResponse(model_object(services.router.info(model)))


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    services = api_services(request)
    services.authorize(request)

    raw = await read_body(request, services.server.max_body_bytes)
    parsed = parse_chat_body(raw, bypass_cache=_bypasses_cache(request), language=_language(request))
    # API clients get a failure's HTTP status, not the canned reply, unless server.canned_reply_for_api is on.
    chat = dataclasses.replace(parsed.chat, allow_canned_reply=services.server.canned_reply_for_api)
    parsed = dataclasses.replace(parsed, chat=chat)
    image_notices: tuple[Notice, ...] = ()
    if services.images is not None:
        # Before the capability check: the vision rules may re-target the
        # request or replace earlier images with a placeholder.
        fitted = await services.images.prepare_request(parsed.chat)
        parsed = dataclasses.replace(parsed, chat=fitted.request)
        image_notices = fitted.notices
    check_chat_request(parsed.chat, services.router, services.server.max_prompt_chars)

    try:
        if parsed.stream:
            # Read the first event before the response starts, so a failure
            # before the first token still gets its own HTTP status.
            events = await until_disconnect(request, open_stream(services.router, parsed.chat))
            if image_notices:
                # The image rules' notices (another model answers, images left out) go first, as comments.
                events = chain_first(image_notices, events)
            encoder = ChunkEncoder(parsed.chat.model)
            body = encode_sse(events, encoder, include_usage=parsed.include_usage)
            return EventStreamResponse(body, headers=_SSE_HEADERS)

        stream = cast(AsyncGenerator[Event, None], services.router.stream(parsed.chat))
        completion, finished = await until_disconnect(request, collect_completion(stream, parsed.chat.model))
        # Header values must be ASCII; a model name outside it shows "?" there.
        served_by = served_by_label(finished).encode("ascii", "replace").decode()
        return JSONResponse(completion, headers={"X-Parley-Served-By": served_by})
    except ClientGone:
        logger.info("client disconnected before the reply to %s started; request cancelled", parsed.chat.model)
        return Response(status_code=_CLIENT_CLOSED)


async def open_stream(router: Router, chat: ChatRequest) -> AsyncGenerator[Event, None]:
    """Start a stream and wait for its first event other than a notice; failures before it are raised here.

    Retry and fallback notices come before the first token, and a failure
    after them is still a failure before the reply started, so it keeps its
    HTTP status. The notices are sent with the first event.
    """
    events = cast(AsyncGenerator[Event, None], router.stream(chat))
    notices: list[Event] = []
    try:
        first = await anext(events)
        while isinstance(first, Notice):
            notices.append(first)
            first = await anext(events)
    except StopAsyncIteration:
        raise StreamIncompleteError("the stream ended before its first event", model=chat.model) from None
    except BaseException:
        await events.aclose()
        raise
    return chain_first((*notices, first), events)


async def until_disconnect(request: Request, work: Awaitable[_T]) -> _T:
    """Await `work`, cancelling it (and so its upstream request) if the client disconnects first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task.done():
        return task.result()

    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    raise ClientGone()


async def _wait_for_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def read_body(request: Request, limit: int) -> bytes:
    """Read the request body, rejecting it with 413 as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _body_too_large(int(declared), limit)

    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _body_too_large(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _body_too_large(size: int, limit: int) -> InputTooLargeError:
    return InputTooLargeError(
        f"the request body is {size} bytes or more, over the limit of {limit} (server.max_body_bytes)",
        fix="Send smaller images or fewer messages, or raise server.max_body_bytes in the config.",
        limit=limit,
    )


def _language(request: Request) -> str:
    """Pick the language of notices and canned replies: zh-CN when Accept-Language puts Chinese first."""
    accepted = request.headers.get("accept-language", "").strip().lower()
    return "zh-CN" if accepted.startswith("zh") else "en"


def _bypasses_cache(request: Request) -> bool:
    directives = request.headers.get("cache-control", "").lower()
    return "no-cache" in directives or "no-store" in directives


# Included after every other API router (see `api.install_fallback`), so the
# real routes match first. Without it, the UI mounted at "/" would return an
# HTML page for an unknown /v1 path.
fallback_router = APIRouter()


def _other_route_serves(request: Request, method: str) -> bool:
    """Check whether a route before this fallback serves the request's path with `method`."""
    scope = {**request.scope, "method": method}
    for route in request.app.router.routes:
        # The first route that fully matches the request itself is this
        # fallback, since routing picked it; the routes after it do not count.
        if route.matches(request.scope)[0] == Match.FULL:
            return False
        if route.matches(scope)[0] == Match.FULL:
            return True
    return False


@fallback_router.api_route("/v1", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
async def api_root(request: Request) -> Response:
    # Without this route the UI mounted at "/" would handle /v1 itself.
    return await unknown_endpoint(request, "")


@fallback_router.api_route("/v1/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
async def unknown_endpoint(request: Request, path: str) -> Response:
    target = f"/v1/{path}"
    allowed = [method for method in ("GET", "POST") if _other_route_serves(request, method)]
    if allowed:
        raise MethodNotAllowedError(
            f"{target} does not accept {request.method}",
            fix=f"Send {' or '.join(allowed)} {target}.",
            param="method",
            allow=", ".join(allowed),
        )
    raise NotFoundError(
        f"{request.method} {target} is not an endpoint of Parley",
        fix="Use GET /v1/models, POST /v1/chat/completions or POST /v1/audio/transcriptions.",
    )


# OpenAI's paths without the /v1 prefix: what a client sends when its base URL
# lacks /v1. Without these routes the UI mounted at "/" would handle them.
_UNPREFIXED_PATHS = ("/chat/completions", "/completions", "/models", "/models/{model:path}", "/embeddings", "/audio/transcriptions")


async def unprefixed_endpoint(request: Request) -> Response:
    base_url = f"{request.url.scheme}://{request.url.netloc}/v1"
    raise NotFoundError(
        f"{request.method} {request.url.path} is not an endpoint of Parley: its OpenAI-compatible API is under /v1",
        fix=f"Set the client's base URL to {base_url}.",
    )


for _path in _UNPREFIXED_PATHS:
    fallback_router.add_api_route(_path, unprefixed_endpoint, methods=["GET", "HEAD", "POST"], include_in_schema=False)
