"""`/ws/chat`: the WebSocket chat protocol of docs/websocket.md, served over the router.

One connection carries several requests at once, each streamed by its own
task and addressed by the id the client chose. A `cancel` stops one request;
closing the connection stops all of them, and with them their upstream
requests. An invalid frame gets an `error` message and the connection stays
open; only failed authentication closes it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import AsyncGenerator
from typing import cast

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from api.auth import ApiKeyError, bearer_token
from api.errors import internal_error
from api.limits import check_chat_request
from api.openai_stream import interrupted_error
from api.services import ApiServices, api_services
from backends import ws_protocol
from backends.errors import BadRequestError, InputTooLargeError, NotFoundError, ParleyError, RateLimitedError
from backends.types import Event, Finished, Notice, ReasoningDelta, TextDelta

logger = logging.getLogger(__name__)

router = APIRouter()

# Close code for failed authentication (RFC 6455: policy violation).
POLICY_VIOLATION = 1008


@router.websocket("/ws/chat")
async def ws_chat(websocket: WebSocket) -> None:
    services = api_services(websocket)
    await websocket.accept()
    await ChatSession(websocket, services).run()


class _Closed(Exception):
    """The client closed the connection."""


class ChatSession:
    """One `/ws/chat` connection: its authentication and its requests in flight, by id."""

    def __init__(self, websocket: WebSocket, services: ApiServices) -> None:
        self._websocket = websocket
        self._services = services
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # Requests the client cancelled: their task ends with the `done` that confirms the cancel.
        self._cancelled: set[str] = set()
        # Requests whose task is already ending: cancelled once, or past its last event. Such a
        # task is never cancelled again, because the CancelledError would land in the close of
        # its upstream request (an await in a `finally`) and leave that request streaming.
        self._ending: set[str] = set()
        self._send_lock = asyncio.Lock()
        # A key in the handshake's Authorization header counts as the auth message.
        header_key = bearer_token(websocket.headers.get("authorization"))
        self._authenticated = not services.api_keys.enabled or services.api_keys.accepts(header_key)

    async def run(self) -> None:
        """Serve frames until the client disconnects, then cancel what is still in flight."""
        try:
            if not self._authenticated and not await self._authenticate(await self._receive_auth()):
                return
            while True:
                await self._handle(await self._receive())
        except _Closed:
            pass
        finally:
            await self._cancel_all()

    async def _receive_auth(self) -> str | bytes | None:
        """Return the first frame, or None when the client sent none within the auth timeout."""
        try:
            async with asyncio.timeout(self._services.server.ws_auth_timeout):
                return await self._receive()
        except TimeoutError:
            return None

    async def _receive(self) -> str | bytes:
        message = await self._websocket.receive()
        if message["type"] == "websocket.disconnect":
            raise _Closed()
        text = message.get("text")
        if text is not None:
            return cast(str, text)
        return cast(bytes, message.get("bytes") or b"")

    async def _authenticate(self, raw: str | bytes | None) -> bool:
        """Check the first frame is an `auth` message with an accepted key; close the connection if not."""
        try:
            message = None if raw is None else ws_protocol.parse_client_message(raw)
        except BadRequestError:
            message = None

        token = message.token if isinstance(message, ws_protocol.AuthMessage) else None
        if token is not None and self._services.api_keys.accepts(token):
            self._authenticated = True
            return True

        problem = "is not valid" if token else "is missing: the first message must be an auth message"
        error = ApiKeyError(f"the API key {problem}", fix='Send {"type": "auth", "token": "<key>"} as the first message.')
        logger.info("WebSocket client rejected: %s", error.detail)
        await self._send(ws_protocol.encode(ws_protocol.error_to_message(error, None)))
        await self._websocket.close(code=POLICY_VIOLATION, reason="authentication failed")
        return False

    async def _handle(self, raw: str | bytes) -> None:
        limit = self._services.server.max_body_bytes
        if len(raw) > limit:
            error = InputTooLargeError(
                f"the message is {len(raw)} bytes, over the limit of {limit} (server.max_body_bytes)",
                fix="Send smaller images, or raise server.max_body_bytes in the config.",
            )
            await self._send_error(error, None)
            return

        try:
            message = ws_protocol.parse_client_message(raw)
        except BadRequestError as exc:
            request_id = exc.params.get("request_id")
            await self._send_error(exc, request_id if isinstance(request_id, str) else None)
            return

        if isinstance(message, ws_protocol.CancelMessage):
            self._cancel(message.id)
        elif isinstance(message, ws_protocol.RequestMessage):
            await self._start(message)
        # A repeated auth message is ignored, as a server without keys ignores every one.

    async def _start(self, message: ws_protocol.RequestMessage) -> None:
        if message.id in self._tasks:
            error = BadRequestError(f"request id {message.id!r} is already in flight", fix="Give every request its own id.")
            await self._send_error(error, message.id)
            return

        limit = self._services.server.ws_max_in_flight
        if len(self._tasks) >= limit:
            busy = RateLimitedError(
                f"this connection already has {limit} requests in flight (server.ws_max_in_flight)",
                fix="Wait for a request to finish, or open another connection.",
                limit=limit,
            )
            await self._send_error(busy, message.id)
            return

        try:
            chat = ws_protocol.message_to_request(message)
            # As on the HTTP gateway: the error event, not the canned reply, unless server.canned_reply_for_api is on.
            chat = dataclasses.replace(chat, allow_canned_reply=self._services.server.canned_reply_for_api)
            if self._services.images is not None:
                # The same image rules as the HTTP gateway; notices go out before the reply.
                fitted = await self._services.images.prepare_request(chat)
                chat = fitted.request
                for notice in fitted.notices:
                    await self._send(_encode_event(notice, message.id))
            check_chat_request(chat, self._services.router, self._services.server.max_prompt_chars)
        except ParleyError as exc:
            await self._send_error(exc, message.id)
            return

        events = cast(AsyncGenerator[Event, None], self._services.router.stream(chat))
        progress = _Progress(model=chat.model)
        self._tasks[message.id] = asyncio.create_task(self._stream(message.id, events, progress), name=f"ws-chat-{message.id}")
        # Let the task start before the next frame is read: a task cancelled before it
        # starts never runs, so a cancel right after the request would get no `done`.
        await asyncio.sleep(0)

    async def _stream(self, request_id: str, events: AsyncGenerator[Event, None], progress: _Progress) -> None:
        try:
            await self._relay(request_id, events, progress)
        except _Closed:
            # The receive loop also gets the close and cancels the other requests.
            pass
        finally:
            self._tasks.pop(request_id, None)
            self._cancelled.discard(request_id)
            self._ending.discard(request_id)

    async def _relay(self, request_id: str, events: AsyncGenerator[Event, None], progress: _Progress) -> None:
        """Send the events of one request; a cancel or an error ends it with its own message."""
        try:
            await self._send_events(request_id, events, progress)
        except asyncio.CancelledError:
            if request_id not in self._cancelled:
                raise
            await self._send(ws_protocol.encode(self._cancelled_message(request_id, progress)))
        except ParleyError as exc:
            logger.warning("WebSocket request %s failed: %s", request_id, exc)
            await self._send_error(exc, request_id)
        except _Closed:
            raise
        except Exception as exc:
            logger.exception("WebSocket request %s failed with an unexpected error", request_id)
            await self._send_error(internal_error(exc), request_id)

    async def _send_events(self, request_id: str, events: AsyncGenerator[Event, None], progress: _Progress) -> None:
        try:
            async for event in events:
                progress.note(event)
                await self._send(_encode_event(event, request_id))
        finally:
            # Close the upstream request before the request's last message goes out. From
            # here on a cancel would only interrupt that close, so none is sent.
            self._ending.add(request_id)
            await events.aclose()

    def _cancelled_message(self, request_id: str, progress: _Progress) -> ws_protocol.DoneMessage:
        if not progress.delivered:
            return ws_protocol.cancelled_message(request_id, failures=progress.failures)
        try:
            backend = self._services.router.info(progress.model).backend
        except NotFoundError:
            backend = ""
        return ws_protocol.cancelled_message(request_id, backend=backend, model=progress.model, failures=progress.failures)

    def _cancel(self, request_id: str) -> None:
        # A cancel for an id not in flight, or already ending, races with the end of that request and is ignored.
        if self._stop(request_id):
            self._cancelled.add(request_id)

    async def _cancel_all(self) -> None:
        tasks = list(self._tasks.values())
        stopped = sum(self._stop(request_id) for request_id in list(self._tasks))
        if tasks:
            logger.info(
                "WebSocket client left with %d requests in flight; cancelled %d, and %d were already ending",
                len(tasks),
                stopped,
                len(tasks) - stopped,
            )
            # Also waits for the requests that were already ending, so their upstream requests are closed on return.
            await asyncio.gather(*tasks, return_exceptions=True)

    def _stop(self, request_id: str) -> bool:
        """Cancel the task of a request unless it is already ending; return whether it was cancelled."""
        task = self._tasks.get(request_id)
        if task is None or request_id in self._ending:
            return False
        self._ending.add(request_id)
        task.cancel()
        return True

    async def _send_error(self, error: ParleyError, request_id: str | None) -> None:
        await self._send(ws_protocol.encode(ws_protocol.error_to_message(error, request_id)))

    async def _send(self, text: str) -> None:
        async with self._send_lock:
            if self._websocket.application_state != WebSocketState.CONNECTED:
                raise _Closed()
            try:
                await self._websocket.send_text(text)
            except (WebSocketDisconnect, RuntimeError, OSError) as exc:
                raise _Closed() from exc


@dataclasses.dataclass
class _Progress:
    """The model serving one request so far and the failures before it, for the `done` message that confirms a cancel."""

    model: str
    # Whether text or reasoning reached the client: only then did a model serve anything.
    delivered: bool = False
    failures: tuple[str, ...] = ()

    def note(self, event: Event) -> None:
        if isinstance(event, TextDelta | ReasoningDelta):
            self.delivered = True
        elif isinstance(event, Notice) and event.kind == "falling_back":
            self.failures = event.failures
            if event.model:
                # Fallback switches models only before the first token.
                self.model = event.model


def _encode_event(event: Event, request_id: str) -> str:
    # Deltas are most of the traffic, so they skip the pydantic models; the
    # output matches ws_protocol.encode byte for byte.
    if isinstance(event, TextDelta):
        return json.dumps({"type": "delta", "id": request_id, "text": event.text}, ensure_ascii=False, separators=(",", ":"))
    if isinstance(event, ReasoningDelta):
        return json.dumps({"type": "reasoning", "id": request_id, "text": event.text}, ensure_ascii=False, separators=(",", ":"))
    if isinstance(event, Finished) and event.reason == "error":
        # The reply was cut off after its text began. The client gets the same
        # error as on the HTTP API, in the `done` message that ends the request.
        error = interrupted_error(event, "the text before this error was sent")
        return ws_protocol.encode(ws_protocol.event_to_message(event, request_id, error=error))
    return ws_protocol.encode(ws_protocol.event_to_message(event, request_id))
