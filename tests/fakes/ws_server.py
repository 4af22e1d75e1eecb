"""A fake Parley WebSocket chat server on 127.0.0.1 with scriptable behaviour.

It speaks the protocol of `backends.ws_protocol` through the real
`websockets` server, and encodes its messages with the same module, so the
client is tested against the shared encoding. A `WsBehaviour` decides what
one request gets: a streamed reply, reasoning, usage, an error message, a
dropped connection, a malformed frame, or a cancel that is ignored.

    async with FakeWsServer() as server:
        server.script(WsBehaviour(reply="hi"), WsBehaviour(error_code="overloaded"))
        ... connect to server.url ...
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from backends import ws_protocol
from backends.errors import AuthError, BadRequestError, error_class_for_code
from backends.scripted import split_tokens
from backends.types import Finished, Notice, ReasoningDelta, TextDelta, Usage


@dataclass
class WsBehaviour:
    """What the server plays for one request. Counts are text chunks; durations are seconds."""

    reply: str = "Hello from the fake WebSocket server."
    reasoning: str = ""
    chunk_delay: float = 0.0
    hang_before_first: float = 0.0
    notices: tuple[tuple[str, str], ...] = ()
    usage: dict[str, int] | None = field(default_factory=lambda: {"prompt_tokens": 3, "completion_tokens": 7})
    finish_reason: str = "stop"
    # Sends an error message with this code after `error_after_chunks` chunks.
    error_code: str | None = None
    error_after_chunks: int = 0
    # Closes the TCP connection without a close frame after this many chunks.
    drop_after_chunks: int | None = None
    # Sends a frame that is not valid JSON after this many chunks.
    malformed_after: int | None = None
    # Keeps streaming after a cancel, as a buggy server would.
    ignore_cancel: bool = False


class FakeWsServer:
    """A real WebSocket server on a random free port of 127.0.0.1.

    `token`, when set, is the key the first `auth` message must carry.
    Records: `received` (every valid client message), `requests` (request
    messages), `cancels` (ids cancelled), `connections` (accepted so far),
    `in_flight` and `max_in_flight` (concurrent requests over all connections).
    """

    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.default = WsBehaviour()
        self.received: list[Any] = []
        self.requests: list[ws_protocol.RequestMessage] = []
        self.cancels: list[str] = []
        self.connections = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._script: list[WsBehaviour] = []
        self._server: Server | None = None
        self._open: set[ServerConnection] = set()

    @property
    def port(self) -> int:
        assert self._server is not None, "the server is not started"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/chat"

    def script(self, *behaviours: WsBehaviour) -> None:
        """Queue one behaviour per coming request, in order; `default` plays after them."""
        self._script.extend(behaviours)

    async def start(self) -> None:
        self._server = await serve(self._handle, "127.0.0.1", 0)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def drop_all(self) -> None:
        """Abort every open connection without a close frame, as a crashed server would."""
        for connection in list(self._open):
            connection.transport.abort()

    async def __aenter__(self) -> FakeWsServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _handle(self, connection: ServerConnection) -> None:
        self.connections += 1
        self._open.add(connection)
        tasks: dict[str, tuple[asyncio.Task[None], WsBehaviour]] = {}
        try:
            if self.token is not None and not await self._authenticate(connection):
                return
            async for raw in connection:
                await self._dispatch(connection, raw, tasks)
        except ConnectionClosed:
            pass
        finally:
            self._open.discard(connection)
            for task, _ in tasks.values():
                task.cancel()

    async def _authenticate(self, connection: ServerConnection) -> bool:
        raw = await connection.recv()
        try:
            message = ws_protocol.parse_client_message(raw)
        except BadRequestError:
            message = None
        if isinstance(message, ws_protocol.AuthMessage) and message.token == self.token:
            self.received.append(message)
            return True
        error = AuthError("the API key is missing or wrong")
        await connection.send(ws_protocol.encode(ws_protocol.error_to_message(error, None)))
        await connection.close(1008, "authentication failed")
        return False

    async def _dispatch(self, connection: ServerConnection, raw: str | bytes, tasks: dict[str, tuple[asyncio.Task[None], WsBehaviour]]) -> None:
        try:
            message = ws_protocol.parse_client_message(raw)
        except BadRequestError as exc:
            await connection.send(ws_protocol.encode(ws_protocol.error_to_message(exc, exc.params.get("request_id"))))
            return
        self.received.append(message)

        if isinstance(message, ws_protocol.RequestMessage):
            self.requests.append(message)
            behaviour = self._script.pop(0) if self._script else self.default
            tasks[message.id] = (asyncio.create_task(self._play(connection, message.id, behaviour)), behaviour)
        elif isinstance(message, ws_protocol.CancelMessage):
            self.cancels.append(message.id)
            running = tasks.get(message.id)
            if running is not None and not running[1].ignore_cancel:
                running[0].cancel()

    async def _play(self, connection: ServerConnection, request_id: str, behaviour: WsBehaviour) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await self._stream(connection, request_id, behaviour)
        except asyncio.CancelledError:
            with contextlib.suppress(ConnectionClosed):
                await connection.send(ws_protocol.encode(ws_protocol.cancelled_message(request_id)))
        except ConnectionClosed:
            pass
        finally:
            self.in_flight -= 1

    async def _stream(self, connection: ServerConnection, request_id: str, behaviour: WsBehaviour) -> None:
        async def send(event: Any) -> None:
            await connection.send(ws_protocol.encode(ws_protocol.event_to_message(event, request_id)))

        await asyncio.sleep(behaviour.hang_before_first)
        for kind, text in behaviour.notices:
            await send(Notice(kind=kind, message=text))  # type: ignore[arg-type]
        for chunk in split_tokens(behaviour.reasoning):
            await send(ReasoningDelta(chunk))

        chunks = split_tokens(behaviour.reply)
        for index in range(len(chunks) + 1):
            if await self._misbehave(connection, request_id, behaviour, index):
                return
            if index == len(chunks):
                break
            if index:
                await asyncio.sleep(behaviour.chunk_delay)
            await send(TextDelta(chunks[index]))

        if behaviour.usage is not None:
            await send(Usage(**behaviour.usage))
        await send(Finished(reason=behaviour.finish_reason, backend="fake-ws", model="fake"))  # type: ignore[arg-type]

    async def _misbehave(self, connection: ServerConnection, request_id: str, behaviour: WsBehaviour, sent: int) -> bool:
        """Play the scripted fault due after `sent` chunks; return whether the stream ends here."""
        if behaviour.drop_after_chunks == sent:
            connection.transport.abort()
            return True
        if behaviour.malformed_after == sent:
            await connection.send("{not json")
            return True
        if behaviour.error_code is not None and behaviour.error_after_chunks == sent:
            error = error_class_for_code(behaviour.error_code)("scripted failure", backend="fake-ws", model="fake")
            await connection.send(ws_protocol.encode(ws_protocol.error_to_message(error, request_id)))
            return True
        return False
