"""A fake OpenAI-compatible HTTP server on 127.0.0.1 that can misbehave on purpose.

It speaks HTTP/1.1 over raw asyncio streams rather than through a web
framework, so a `Behaviour` controls the bytes on the wire. A behaviour can
split an SSE event inside a multi-byte UTF-8 character, drop the connection
mid-stream, send keep-alive comments, leave out `data: [DONE]`, send an
error object inside a 200 stream or repeat the API key in an error body.

Serves:
    POST /v1/chat/completions   streaming (SSE) and non-streaming JSON replies
    GET  /v1/models             the configured model ids

Use in tests through the `openai_server` (async) and `openai_server_thread`
(background thread, for sync tests) fixtures, or standalone for benchmarks:

    python -m tests.fakes.openai_server --port 8123 --chunks 2000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import re
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

# Request heads larger than this are rejected with 431, like real servers do.
MAX_HEAD_BYTES = 64 * 1024

# A CJK character is one token; anything else is split at word starts.
_TOKEN_PATTERN = re.compile(r"[\u3000-\u9fff\uac00-\ud7af\uff00-\uffef]|\s*[^\s\u3000-\u9fff\uac00-\ud7af\uff00-\uffef]+|\s+")


def tokenize(text: str) -> list[str]:
    """Split text into the pieces the fake server streams, one per chunk."""
    return _TOKEN_PATTERN.findall(text)


@dataclass
class Behaviour:
    """The reply the server plays for one chat completion request.

    Counts (`disconnect_after_chunks`, `error_mid_stream_after`,
    `malformed_after`) count content chunks: reasoning and text deltas.
    Durations are in seconds. `chunk_delay` follows each content chunk, so
    the closing chunks (finish reason, usage, [DONE]) follow the last one at once.
    """

    reply: str = "Hello from the fake server."
    # Explicit chunks to stream in place of `reply` split into tokens.
    chunks: tuple[str, ...] | None = None
    reasoning: str = ""
    chunk_delay: float = 0.0
    status: int = 200
    # The body of a non-200 reply or of an error mid-stream: a JSON object,
    # or a str/bytes sent as is (an HTML error page from a proxy, say).
    error_body: dict[str, Any] | str | bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # Puts the request's Authorization header into the error body (of a
    # non-200 reply or an error mid-stream), as some gateways and proxies do.
    echo_authorization: bool = False
    hang_before_first_byte: float = 0.0
    # Sends the response head, then waits this long before the first event.
    hang_after_headers: float = 0.0
    disconnect_after_chunks: int | None = None
    omit_done: bool = False
    # The line that ends the stream; some servers pad it, as "data: [DONE] ".
    done_line: str = "data: [DONE]"
    # Comment lines (": keep-alive" and bare ":", alternating) sent before
    # the first chunk, `keepalive_interval` apart.
    keepalive_comments: int = 0
    keepalive_interval: float = 0.0
    error_mid_stream_after: int | None = None
    # Sends that error as an `event: error` SSE event rather than a plain data line.
    error_event: bool = False
    malformed_after: int | None = None
    # Writes every event in two reads split inside a multi-byte UTF-8
    # character (or in the middle when the event has none).
    split_utf8: bool = False
    split_delay: float = 0.01
    # Compresses the stream with gzip (Content-Encoding: gzip), flushed after every event.
    gzip: bool = False
    # None: send the usage-only chunk when the request sets
    # stream_options.include_usage. True or False: always or never.
    usage_chunk: bool | None = None
    # Replaces the usage object the server computes from the token counts.
    usage: dict[str, Any] | None = None
    finish_reason: str | None = "stop"
    # Non-streaming replies: blank lines sent before the JSON body, one
    # per `chunk_delay`, as DeepSeek does while a reply is being generated.
    leading_blank_lines: int = 0
    # A 200 body sent as is in place of a chat completion, such as the HTML
    # page of a website that a wrong base_url points at.
    raw_body: str | bytes | None = None
    raw_content_type: str = "text/html; charset=utf-8"
    # Events written per socket write when streaming without delays; a
    # larger batch lets a benchmark measure the client rather than this server.
    batch: int = 1


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any = None


class _Disconnected(Exception):
    """The client closed the connection while the server was writing."""


class _Connection:
    """One client connection: a read buffer shared by request parsing and the disconnect watcher."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buffer = bytearray()

    async def read_head(self) -> bytes | None:
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(self.buffer[:end])
                del self.buffer[: end + 4]
                return head
            if len(self.buffer) > MAX_HEAD_BYTES:
                raise ValueError("request head too large")
            if not await self._fill():
                return None

    async def _fill(self) -> bool:
        """Read more bytes into the buffer; returns False at end of stream."""
        data = await self.reader.read(65536)
        self.buffer += data
        return bool(data)

    async def read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not await self._fill():
                raise asyncio.IncompleteReadError(bytes(self.buffer), size)
        body = bytes(self.buffer[:size])
        del self.buffer[:size]
        return body

    async def read_line(self) -> bytes:
        while True:
            end = self.buffer.find(b"\r\n")
            if end >= 0:
                line = bytes(self.buffer[:end])
                del self.buffer[: end + 2]
                return line
            if not await self._fill():
                raise asyncio.IncompleteReadError(bytes(self.buffer), None)

    async def read_chunked_body(self) -> bytes:
        body = bytearray()
        while True:
            size = int((await self.read_line()).split(b";")[0], 16)
            if size == 0:
                await self.read_line()
                return bytes(body)
            body += await self.read_exactly(size)
            await self.read_line()

    async def wait_for_peer_close(self) -> None:
        """Return once the client closes its side; bytes sent meanwhile are kept for the next request."""
        while await self._fill():
            pass

    async def write(self, data: bytes) -> None:
        if self.writer.is_closing():
            raise _Disconnected
        self.writer.write(data)
        try:
            await self.writer.drain()
        except ConnectionError as exc:
            raise _Disconnected from exc


def _chunk(data: bytes) -> bytes:
    """Frame bytes as one HTTP/1.1 chunk."""
    return b"%x\r\n%s\r\n" % (len(data), data)


class _GzipFramer:
    """Compresses a stream event by event, flushing each so the client can decode it at once."""

    def __init__(self) -> None:
        self._compressor = zlib.compressobj(wbits=31)

    def frame(self, data: bytes) -> bytes:
        return _chunk(self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH))

    def finish(self) -> bytes:
        return _chunk(self._compressor.flush())


def _split_inside_character(event: bytes) -> tuple[bytes, bytes]:
    """Split an event inside its first multi-byte UTF-8 character, or in the middle."""
    for index, byte in enumerate(event):
        if byte >= 0xC0:
            return event[: index + 1], event[index + 1 :]
    middle = len(event) // 2
    return event[:middle], event[middle:]


def _status_line(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    return f"HTTP/1.1 {status} {phrase}\r\n".encode()


def _default_error_body(status: int) -> dict[str, Any]:
    kinds = {
        400: ("invalid_request_error", None),
        401: ("invalid_request_error", "invalid_api_key"),
        402: ("invalid_request_error", "insufficient_balance"),
        404: ("invalid_request_error", "model_not_found"),
        429: ("rate_limit_error", "rate_limit_exceeded"),
    }
    kind, code = kinds.get(status, ("server_error", None))
    return {"error": {"message": f"fake server error {status}", "type": kind, "param": None, "code": code}}


def _echo_body(behaviour: Behaviour, request: RecordedRequest) -> dict[str, Any]:
    status = behaviour.status if behaviour.status != 200 else 500
    body = _default_error_body(status)
    body["error"]["message"] = f"Incorrect API key provided: {request.headers.get('authorization', '')}. Request headers: {request.headers}"
    return body


class FakeOpenAIServer:
    """An OpenAI-compatible server on 127.0.0.1 that plays scripted `Behaviour`s.

    Each POST /v1/chat/completions takes the next behaviour queued with
    `script()`, or `default` when the queue is empty. Every request is
    recorded in `requests`. `disconnects` counts responses the client
    abandoned by closing the connection before the server finished.
    `connections` counts accepted TCP connections.
    """

    def __init__(
        self,
        *,
        default: Behaviour | None = None,
        models: tuple[str, ...] = ("fake-model",),
        api_key: str | None = None,
        port: int = 0,
    ) -> None:
        self.default = default or Behaviour()
        self.models = models
        # When set, requests without "Authorization: Bearer <api_key>" get 401.
        self.api_key = api_key
        # Replaces the normal reply to GET /v1/models (status, headers, hangs).
        self.models_behaviour: Behaviour | None = None
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.disconnects = 0
        self.completed = 0
        # TCP connections accepted; fewer than requests means clients reused them.
        self.connections = 0
        self._queue: deque[Behaviour] = deque()
        self._port = port
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # Lifecycle

    async def start(self) -> FakeOpenAIServer:
        self._server = await asyncio.start_server(self._serve_connection, "127.0.0.1", self._port)
        self._port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FakeOpenAIServer:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/v1"

    # Scripting and inspection

    def script(self, *behaviours: Behaviour) -> None:
        """Queue one behaviour per coming chat completion request, in order."""
        self._queue.extend(behaviours)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [request for request in self.requests if request.path.endswith("/chat/completions")]

    async def wait_until(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        """Poll `condition` until it holds; raises TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout} s")
            await asyncio.sleep(0.01)

    def wait_until_sync(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        """Like `wait_until`, for sync tests that run the server in a thread."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout} s")
            time.sleep(0.01)

    # Connection handling

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        connection = _Connection(reader, writer)
        try:
            while await self._serve_request(connection):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, _Disconnected):
            pass
        except asyncio.CancelledError:
            # stop() cancels open connections. Python 3.11 logs a traceback for a
            # handler task that ends cancelled, so this one ends normally.
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve_request(self, connection: _Connection) -> bool:
        """Read and answer one request; returns whether the connection stays open."""
        try:
            request = await self._read_request(connection)
        except ValueError as exc:
            await connection.write(self._json_response(431, {"error": {"message": str(exc)}}))
            return False
        if request is None:
            return False
        self.requests.append(request)

        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        respond = asyncio.ensure_future(self._respond(request, connection))
        watch = asyncio.ensure_future(connection.wait_for_peer_close())
        try:
            await asyncio.wait({respond, watch}, return_when=asyncio.FIRST_COMPLETED)
            if not respond.done():
                respond.cancel()
                with contextlib.suppress(asyncio.CancelledError, _Disconnected):
                    await respond
                self.disconnects += 1
                return False
            try:
                keep_open = respond.result()
            except _Disconnected:
                self.disconnects += 1
                return False
            self.completed += 1
            return keep_open and not watch.done()
        finally:
            self.in_flight -= 1
            respond.cancel()
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch

    async def _read_request(self, connection: _Connection) -> RecordedRequest | None:
        head = await connection.read_head()
        if head is None:
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()

        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = await connection.read_chunked_body()
        else:
            body = await connection.read_exactly(int(headers.get("content-length", "0")))
        parsed: Any = None
        if body:
            with contextlib.suppress(ValueError):
                parsed = json.loads(body)
        return RecordedRequest(method=method, path=target.split("?", 1)[0], headers=headers, body=body, json=parsed)

    # Responses

    async def _respond(self, request: RecordedRequest, connection: _Connection) -> bool:
        if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
            await connection.write(self._json_response(401, _default_error_body(401)))
            return True

        if request.method == "GET" and request.path.rstrip("/").endswith("/models"):
            behaviour = self.models_behaviour
            if behaviour is None:
                await connection.write(self._json_response(200, self._models_body()))
                return True
            return await self._play(behaviour, request, connection, body=self._models_body())

        if request.method == "POST" and request.path.rstrip("/").endswith("/chat/completions"):
            if not isinstance(request.json, dict) or not isinstance(request.json.get("messages"), list):
                body = {"error": {"message": "request body must be a JSON object with messages", "type": "invalid_request_error"}}
                await connection.write(self._json_response(400, body))
                return True
            behaviour = self._queue.popleft() if self._queue else self.default
            return await self._play(behaviour, request, connection)

        await connection.write(self._json_response(404, {"error": {"message": f"no route {request.method} {request.path}"}}))
        return True

    async def _play(
        self,
        behaviour: Behaviour,
        request: RecordedRequest,
        connection: _Connection,
        body: dict[str, Any] | None = None,
    ) -> bool:
        if behaviour.hang_before_first_byte:
            await asyncio.sleep(behaviour.hang_before_first_byte)

        if behaviour.echo_authorization:
            behaviour = dataclasses.replace(behaviour, error_body=_echo_body(behaviour, request))
        if behaviour.status != 200:
            error_body = behaviour.error_body if behaviour.error_body is not None else _default_error_body(behaviour.status)
            await connection.write(self._json_response(behaviour.status, error_body, behaviour.headers))
            return True

        if body is not None:
            await connection.write(self._json_response(200, body, behaviour.headers))
            return True
        if behaviour.raw_body is not None:
            headers = {"Content-Type": behaviour.raw_content_type, **behaviour.headers}
            await connection.write(self._json_response(200, behaviour.raw_body, headers))
            return True

        payload = request.json if isinstance(request.json, dict) else {}
        if payload.get("stream"):
            return await self._stream(behaviour, payload, connection)
        return await self._reply_json(behaviour, payload, connection)

    def _json_response(self, status: int, body: dict[str, Any] | str | bytes, headers: dict[str, str] | None = None) -> bytes:
        if isinstance(body, dict):
            data = json.dumps(body).encode()
            content_type = "application/json"
        else:
            data = body.encode() if isinstance(body, str) else body
            content_type = "text/html; charset=utf-8"
        extra = dict(headers or {})
        content_type = extra.pop("Content-Type", content_type)
        head = _status_line(status) + f"Content-Type: {content_type}\r\nContent-Length: {len(data)}\r\n".encode()
        for name, value in extra.items():
            head += f"{name}: {value}\r\n".encode()
        return head + b"\r\n" + data

    def _models_body(self) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "fake"} for name in self.models]}

    def _chunked_head(self, content_type: str, headers: dict[str, str]) -> bytes:
        head = _status_line(200) + f"Content-Type: {content_type}\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n".encode()
        for name, value in headers.items():
            head += f"{name}: {value}\r\n".encode()
        return head + b"\r\n"

    def _usage(self, behaviour: Behaviour, payload: dict[str, Any], completion: int, reasoning: int) -> dict[str, Any]:
        if behaviour.usage is not None:
            return behaviour.usage
        prompt = sum(len(str(message.get("content", ""))) // 4 + 1 for message in payload.get("messages", []))
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion + reasoning,
            "total_tokens": prompt + completion + reasoning,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        }

    async def _reply_json(self, behaviour: Behaviour, payload: dict[str, Any], connection: _Connection) -> bool:
        text = "".join(behaviour.chunks) if behaviour.chunks is not None else behaviour.reply
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if behaviour.reasoning:
            message["reasoning_content"] = behaviour.reasoning
        body = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": payload.get("model", ""),
            "choices": [{"index": 0, "message": message, "finish_reason": behaviour.finish_reason}],
            "usage": self._usage(behaviour, payload, len(tokenize(text)), len(tokenize(behaviour.reasoning))),
        }
        if not behaviour.leading_blank_lines:
            await connection.write(self._json_response(200, body, behaviour.headers))
            return True

        await connection.write(self._chunked_head("application/json", behaviour.headers))
        for _ in range(behaviour.leading_blank_lines):
            await connection.write(_chunk(b"\n"))
            if behaviour.chunk_delay:
                await asyncio.sleep(behaviour.chunk_delay)
        await connection.write(_chunk(json.dumps(body).encode()) + _chunk(b""))
        return True

    def _stream_events(self, behaviour: Behaviour, payload: dict[str, Any]) -> Iterator[tuple[str, bytes]]:
        """Yield (kind, SSE event bytes); kind is "content" for chunks that count, else "other"."""
        model = payload.get("model", "")
        created = int(time.time())

        def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created, "model": model, "choices": choices, **extra}
            return b"data: " + json.dumps(chunk, ensure_ascii=False).encode() + b"\n\n"

        yield "other", event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        reasoning_tokens = tokenize(behaviour.reasoning)
        for token in reasoning_tokens:
            yield "content", event([{"index": 0, "delta": {"reasoning_content": token}, "finish_reason": None}])
        text_tokens = list(behaviour.chunks) if behaviour.chunks is not None else tokenize(behaviour.reply)
        for token in text_tokens:
            yield "content", event([{"index": 0, "delta": {"content": token}, "finish_reason": None}])
        yield "other", event([{"index": 0, "delta": {}, "finish_reason": behaviour.finish_reason}])

        wants_usage = bool((payload.get("stream_options") or {}).get("include_usage"))
        if behaviour.usage_chunk or (behaviour.usage_chunk is None and wants_usage):
            usage = self._usage(behaviour, payload, len(text_tokens), len(reasoning_tokens))
            yield "other", event([], usage=usage)
        if not behaviour.omit_done:
            yield "other", behaviour.done_line.encode() + b"\n\n"

    async def _stream(self, behaviour: Behaviour, payload: dict[str, Any], connection: _Connection) -> bool:
        headers = dict(behaviour.headers)
        gzip_framer = _GzipFramer() if behaviour.gzip else None
        frame: Callable[[bytes], bytes] = _chunk
        if gzip_framer is not None:
            headers["Content-Encoding"] = "gzip"
            frame = gzip_framer.frame
        await connection.write(self._chunked_head("text/event-stream; charset=utf-8", headers))
        if behaviour.hang_after_headers:
            await asyncio.sleep(behaviour.hang_after_headers)
        for index in range(behaviour.keepalive_comments):
            await connection.write(frame(b": keep-alive\n\n" if index % 2 == 0 else b":\n\n"))
            if behaviour.keepalive_interval:
                await asyncio.sleep(behaviour.keepalive_interval)

        sent = 0
        pending: list[bytes] = []
        for kind, data in self._stream_events(behaviour, payload):
            if kind == "content":
                if sent == behaviour.disconnect_after_chunks:
                    await self._flush(connection, pending)
                    return False
                if sent == behaviour.error_mid_stream_after:
                    error = behaviour.error_body if isinstance(behaviour.error_body, dict) else _default_error_body(500)
                    prefix = b"event: error\n" if behaviour.error_event else b""
                    pending.append(frame(prefix + b"data: " + json.dumps(error).encode() + b"\n\n"))
                    await self._flush(connection, pending)
                    await connection.write(_chunk(b""))
                    return True
                if sent == behaviour.malformed_after:
                    pending.append(frame(b'data: {"choices": [{"delta": {"content": "cut\n\n'))
                sent += 1

            if behaviour.split_utf8:
                first, second = _split_inside_character(data)
                await connection.write(frame(first))
                await asyncio.sleep(behaviour.split_delay)
                await connection.write(frame(second))
            else:
                pending.append(frame(data))
                if len(pending) >= behaviour.batch:
                    await self._flush(connection, pending)
            if behaviour.chunk_delay and kind == "content":
                await self._flush(connection, pending)
                await asyncio.sleep(behaviour.chunk_delay)

        if sent == behaviour.disconnect_after_chunks:
            await self._flush(connection, pending)
            return False
        if gzip_framer is not None:
            pending.append(gzip_framer.finish())
        pending.append(_chunk(b""))
        await self._flush(connection, pending)
        return True

    @staticmethod
    async def _flush(connection: _Connection, pending: list[bytes]) -> None:
        if pending:
            data = b"".join(pending)
            pending.clear()
            await connection.write(data)


@contextlib.contextmanager
def serve_in_thread(server: FakeOpenAIServer) -> Iterator[FakeOpenAIServer]:
    """Run `server` on its own event loop in a daemon thread, for sync tests."""
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="fake-openai-server", daemon=True)
    thread.start()
    if not started.wait(timeout=10):
        raise RuntimeError("the fake OpenAI server did not start within 10 s")
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve a fake OpenAI-compatible API on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8123, help="TCP port to listen on (0 picks a free one).")
    parser.add_argument("--chunks", type=int, default=2000, help="Content chunks in each streamed reply.")
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="Seconds between chunks.")
    parser.add_argument("--batch", type=int, default=1, help="Events per socket write when there is no delay.")
    args = parser.parse_args()

    behaviour = Behaviour(chunks=tuple(f"tok{index} " for index in range(args.chunks)), chunk_delay=args.chunk_delay, batch=args.batch)

    async def serve() -> None:
        server = await FakeOpenAIServer(default=behaviour, port=args.port).start()
        print(f"fake OpenAI server on {server.base_url}", flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
