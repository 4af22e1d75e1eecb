"""The `websocket` backend: a client of the Parley WebSocket chat protocol.

One connection per backend carries every request, multiplexed by request
id (see docs/websocket.md). A reader task routes incoming messages to the
queue of their request. When the connection drops, every request in flight
fails, and the next request opens a new connection.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, field_validator, model_validator
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from backends import ws_protocol
from backends.base import Backend, find_model
from backends.errors import (
    AuthError,
    ConnectionFailedError,
    ParleyError,
    StreamIncompleteError,
    UpstreamTimeoutError,
)
from backends.redaction import Redactor
from backends.registry import BackendContext
from backends.settings import BackendSettings, ModelSettings
from backends.types import ChatRequest, Event, Finished, Health, ModelInfo

logger = logging.getLogger(__name__)


class Settings(BackendSettings):
    """Settings of a `websocket` backend.

    `url` is the server's chat endpoint, such as "ws://127.0.0.1:7860/ws/chat".
    `api_key_env` names the environment variable that contains the key sent
    in the `auth` message; leave it unset for a server without keys.
    `max_message_bytes` is the largest frame accepted from the server.
    """

    kind: Literal["websocket"] = "websocket"
    url: str
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    max_message_bytes: int = Field(default=1024 * 1024, ge=1024)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("ws://", "wss://")):
            raise ValueError(f"url {value!r} must start with ws:// or wss://")
        return value

    @model_validator(mode="after")
    def _check_models(self) -> Settings:
        if not self.models:
            raise ValueError("a websocket backend needs at least one [[backends.models]] entry naming a model the server serves")
        return self


class _ConnectionLost:
    """Queue item telling a request that the connection ended under it."""


@dataclass
class _Progress:
    """How far one request got; `ended` means the server sent its `done` or `error`."""

    received_content: bool = False
    ended: bool = False


_ServerMessage = (
    ws_protocol.DeltaMessage
    | ws_protocol.ReasoningMessage
    | ws_protocol.UsageMessage
    | ws_protocol.NoticeMessage
    | ws_protocol.DoneMessage
    | ws_protocol.ErrorMessage
)
_Item = _ServerMessage | ParleyError | _ConnectionLost


class _Connection:
    """One open WebSocket and the queues of the requests in flight on it."""

    def __init__(self, websocket: ClientConnection, backend: str, redactor: Redactor) -> None:
        self.websocket = websocket
        self.backend = backend
        self.redactor = redactor
        self.pending: dict[str, asyncio.Queue[_Item]] = {}
        # A connection-level error (bad auth, a broken frame) fails every request after it too.
        self.failure: ParleyError | None = None
        self.reader = asyncio.create_task(self._read(), name=f"ws-reader-{backend}")

    @property
    def usable(self) -> bool:
        return self.failure is None and not self.reader.done()

    def register(self, request_id: str) -> asyncio.Queue[_Item]:
        if self.failure is not None:
            raise self.failure
        queue: asyncio.Queue[_Item] = asyncio.Queue()
        self.pending[request_id] = queue
        return queue

    async def _read(self) -> None:
        try:
            async for raw in self.websocket:
                message = ws_protocol.parse_server_message(raw)
                self._route(message)
        except ParleyError as exc:
            logger.warning("closing the connection of %s: %s", self.backend, exc)
            self.failure = exc
            await self.websocket.close(1002, "invalid protocol message")
        except ConnectionClosed:
            pass
        finally:
            for queue in self.pending.values():
                queue.put_nowait(self.failure if self.failure is not None else _ConnectionLost())

    def _route(self, message: _ServerMessage) -> None:
        if isinstance(message, ws_protocol.ErrorMessage) and message.id is None:
            self.failure = ws_protocol.message_to_error(message, backend=self.backend, redactor=self.redactor)
            logger.warning("server of %s reported a connection error: %s", self.backend, message.code)
            for queue in self.pending.values():
                queue.put_nowait(self.failure)
            return
        target = self.pending.get(message.id or "")
        if target is None:
            # Late messages of a cancelled request are expected; anything else is dropped too.
            logger.debug("dropping a %s message for request %s, which is not in flight", message.type, message.id)
            return
        target.put_nowait(message)

    async def close(self) -> None:
        await self.websocket.close()
        await asyncio.gather(self.reader, return_exceptions=True)


class WebSocketBackend(Backend):
    def __init__(self, settings: Settings, env: Mapping[str, str], secrets: frozenset[str] = frozenset()) -> None:
        self.name = settings.name
        self.settings = settings
        self._env = env
        key_env = settings.api_key_env
        own_key = (env.get(key_env) or os.environ.get(key_env) or "") if key_env else ""
        self._redactor = Redactor((*secrets, own_key))
        self._models = {model.name: model for model in settings.models}
        self._connection: _Connection | None = None
        self._connect_lock = asyncio.Lock()

    def models(self) -> list[ModelInfo]:
        return [model.info(self.name) for model in self._models.values()]

    async def stream(self, request: ChatRequest) -> AsyncIterator[Event]:
        model = find_model(self._models, request, self.name)
        connection = await self._connect(model)
        request_id = uuid.uuid4().hex
        queue = connection.register(request_id)
        progress = _Progress()
        logger.info("websocket request %s to %s/%s", request_id, self.name, model.name)

        try:
            message = ws_protocol.request_to_message(request, request_id, model=model.upstream_id)
            try:
                await connection.websocket.send(ws_protocol.encode(message))
            except ConnectionClosed as exc:
                raise connection.failure or self._lost(model, received=False) from exc

            async for event in self._receive(queue, model, progress):
                yield event
        finally:
            connection.pending.pop(request_id, None)
            if not progress.ended:
                await self._send_cancel(connection, request_id)

    async def _receive(self, queue: asyncio.Queue[_Item], model: ModelSettings, progress: _Progress) -> AsyncIterator[Event]:
        timeouts = self.settings.timeouts
        deadline = time.monotonic() + timeouts.total

        while True:
            gap = timeouts.chunk_gap if progress.received_content else timeouts.first_token
            wait = min(gap, deadline - time.monotonic())
            try:
                async with asyncio.timeout(max(wait, 0)):
                    item = await queue.get()
            except TimeoutError as exc:
                phase = "the next chunk" if progress.received_content else "the first token"
                raise UpstreamTimeoutError(f"timed out after {wait:.1f} s waiting for {phase}", backend=self.name, model=model.name) from exc

            if isinstance(item, ParleyError):
                raise item
            if isinstance(item, _ConnectionLost):
                raise self._lost(model, received=progress.received_content)
            if isinstance(item, ws_protocol.ErrorMessage):
                progress.ended = True
                raise ws_protocol.message_to_error(item, backend=self.name, model=model.name, redactor=self._redactor)
            if isinstance(item, ws_protocol.DoneMessage) and item.reason == "error":
                # The reply was cut off after its text began. A backend raises a failure, never yields it.
                progress.ended = True
                raise self._interrupted(item, model)

            event = ws_protocol.message_to_event(item)
            if isinstance(event, Finished):
                progress.ended = True
                yield Finished(reason=event.reason, backend=self.name, model=model.name, cached=event.cached, failures=event.failures)
                return
            if item.type in ("delta", "reasoning"):
                progress.received_content = True
            yield event

    def _interrupted(self, done: ws_protocol.DoneMessage, model: ModelSettings) -> ParleyError:
        """Return the error of a `done` with reason "error": the one in its `error` field, by its code."""
        if done.error is not None:
            return ws_protocol.message_to_error(done.error, backend=self.name, model=model.name, redactor=self._redactor)
        # A server older than the `error` field names the cause only in `failures`.
        cause = self._redactor.redact(", ".join(done.failures)) or "no cause given"
        return StreamIncompleteError(f"the server reported that the reply was interrupted ({cause})", backend=self.name, model=model.name)

    def _lost(self, model: ModelSettings, *, received: bool) -> ParleyError:
        if received:
            return StreamIncompleteError("the connection closed in the middle of the reply", backend=self.name, model=model.name)
        return ConnectionFailedError("the connection closed before the reply started", backend=self.name, model=model.name)

    async def _send_cancel(self, connection: _Connection, request_id: str) -> None:
        if not connection.usable:
            return
        cancel = ws_protocol.CancelMessage(type="cancel", id=request_id)
        try:
            await connection.websocket.send(ws_protocol.encode(cancel))
        except ConnectionClosed:
            logger.debug("could not send cancel for %s: the connection is closed", request_id)
        else:
            logger.info("websocket request %s to %s cancelled", request_id, self.name)

    async def _connect(self, model: ModelSettings | None) -> _Connection:
        """Return the open connection, opening (and authenticating) a new one if there is none."""
        async with self._connect_lock:
            if self._connection is not None and self._connection.usable:
                return self._connection
            token = self._api_key()
            websocket = await self._open(model)
            if token is not None:
                try:
                    await websocket.send(ws_protocol.encode(ws_protocol.AuthMessage(type="auth", token=token)))
                except ConnectionClosed as exc:
                    raise ConnectionFailedError("the server closed the connection before authentication", backend=self.name) from exc
            self._connection = _Connection(websocket, self.name, self._redactor)
            return self._connection

    def _api_key(self) -> str | None:
        name = self.settings.api_key_env
        if name is None:
            return None
        key = self._env.get(name) or os.environ.get(name)
        if not key:
            raise AuthError(
                f"{name} is not set",
                backend=self.name,
                fix=f"Export {name} with the server's API key, or remove api_key_env from the {self.name} backend.",
                env=name,
            )
        return key

    async def _open(self, model: ModelSettings | None) -> ClientConnection:
        try:
            return await connect(
                self.settings.url,
                open_timeout=self.settings.timeouts.connect,
                max_size=self.settings.max_message_bytes,
            )
        except (InvalidHandshake, InvalidURI, TimeoutError, OSError) as exc:
            raise self._connect_error(exc, model.name if model else "") from exc

    def _connect_error(self, exc: Exception, model: str) -> ParleyError:
        url = self.settings.url
        if isinstance(exc, InvalidStatus):
            status = exc.response.status_code
            if status in (401, 403):
                return AuthError(f"the server rejected the connection with HTTP {status}", backend=self.name, model=model, status=status)
            return ConnectionFailedError(f"the WebSocket handshake failed with HTTP {status}", backend=self.name, model=model, status=status)
        if isinstance(exc, TimeoutError):
            return ConnectionFailedError(f"connecting to {url} timed out", backend=self.name, model=model)
        if isinstance(exc, OSError):
            return ConnectionFailedError(f"failed to connect to {url}: {exc.strerror or exc}", backend=self.name, model=model)
        return ConnectionFailedError(f"the WebSocket handshake with {url} failed: {exc}", backend=self.name, model=model)

    async def health(self) -> Health:
        try:
            await self._connect(None)
        except ParleyError as exc:
            return Health(backend=self.name, reachable=False, detail=str(exc))
        return Health(backend=self.name, reachable=True)

    async def aclose(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None


def create(settings: BackendSettings, context: BackendContext) -> Backend:
    assert isinstance(settings, Settings), f"expected websocket Settings, got {type(settings).__name__}"
    return WebSocketBackend(settings, context.env, context.secrets)
