"""An incremental decoder for `text/event-stream` bodies (server-sent events).

It follows the event stream format of the WHATWG HTML standard, section
"Server-sent events". Lines end in LF, CRLF or CR. `field: value` lines
build an event and a blank line dispatches it. Lines starting with ":" are
comments, which servers send as ": keep-alive" to keep the connection open.

The decoder works on bytes and splits lines before decoding anything. A
multi-byte UTF-8 character never contains a line break byte, so a complete
line is always a complete run of characters, however the network split the
reads. The `data` of an event stays bytes, which a JSON parser reads
directly. This module is the hot path of every streamed reply, so it
avoids per-line work beyond a split and a prefix check.
"""

from __future__ import annotations

from typing import NamedTuple

# An event bigger than this is an upstream fault; stop rather than buffer without limit.
DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024

_BOM = b"\xef\xbb\xbf"
_COLON = ord(":")


class SSEError(ValueError):
    """The stream breaks the event stream format (for example an event over the size limit)."""


class SSEEvent(NamedTuple):
    """One dispatched event: its type ("message" unless the server set `event:`) and its data."""

    event: str
    data: bytes


class SSEDecoder:
    """Incremental decoder from the bytes of an event stream, split anywhere, to events.

    Call `feed()` with each chunk read from the network and `flush()` once
    at the end of the stream. `comments` counts comment lines seen, such as
    keep-alives, which carry no event.
    """

    __slots__ = ("_tail", "_data", "_event", "_size", "_started", "_max_event_bytes", "comments", "last_event_id")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._tail = b""
        # Data lines of the event being built; None until its first data line.
        self._data: list[bytes] | None = None
        self._event = ""
        self._size = 0
        self._started = False
        self._max_event_bytes = max_event_bytes
        self.comments = 0
        self.last_event_id = ""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Decode one chunk and return the events it completes, in order."""
        if not self._started:
            if len(self._tail) + len(chunk) < len(_BOM) and _BOM.startswith(self._tail + chunk):
                # Too few bytes yet to tell whether the stream starts with a byte order mark.
                self._tail += chunk
                return []
            chunk = self._tail + chunk
            self._tail = b""
            self._started = True
            if chunk.startswith(_BOM):
                chunk = chunk[len(_BOM) :]

        buffer = self._tail + chunk if self._tail else chunk
        held_cr = False
        if b"\r" in buffer:
            # A CR at the very end may be the first half of a CRLF split across reads.
            held_cr = buffer.endswith(b"\r")
            if held_cr:
                buffer = buffer[:-1]
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")

        lines = buffer.split(b"\n")
        tail = lines.pop()
        self._tail = tail + b"\r" if held_cr else tail
        if len(self._tail) > self._max_event_bytes:
            raise SSEError(f"a line of the event stream exceeds {self._max_event_bytes} bytes")
        return self._take_lines(lines)

    def flush(self) -> list[SSEEvent]:
        """End the stream: decode an unterminated last line and dispatch a pending event.

        The standard discards an event that no blank line ends, but some
        servers close the stream right after their last `data:` line, so the
        decoder dispatches it. The caller still notices a truncated event,
        because its JSON does not parse.
        """
        tail = self._tail.rstrip(b"\r")
        self._tail = b""
        # An empty line at the end dispatches the pending event like a blank line would.
        return self._take_lines([tail, b""] if tail else [b""])

    def _take_lines(self, lines: list[bytes]) -> list[SSEEvent]:
        # The state lives in locals for the loop: this runs once per line of every reply.
        events: list[SSEEvent] = []
        data = self._data
        size = self._size
        event_type = self._event
        for line in lines:
            if not line:
                if data is not None:
                    events.append(SSEEvent(event_type or "message", data[0] if len(data) == 1 else b"\n".join(data)))
                    data = None
                    size = 0
                # Dispatching, or a blank line without data, resets the event type.
                event_type = ""
                continue

            if line.startswith(b"data:") or line == b"data":
                value = line[6:] if line[5:6] == b" " else line[5:]
                size += len(value)
                if size > self._max_event_bytes:
                    raise SSEError(f"an event of the event stream exceeds {self._max_event_bytes} bytes")
                if data is None:
                    data = [value]
                else:
                    data.append(value)
            elif line[0] == _COLON:
                self.comments += 1
            else:
                name, _, field_value = line.partition(b":")
                if field_value.startswith(b" "):
                    field_value = field_value[1:]
                if name == b"event":
                    event_type = field_value.decode("utf-8", "replace")
                elif name == b"id" and b"\0" not in field_value:
                    self.last_event_id = field_value.decode("utf-8", "replace")
                # Other fields, "retry" among them, matter only to a browser that reconnects.

        self._data = data
        self._size = size
        self._event = event_type
        return events

