"""Unit tests of the SSE decoder: bytes fed in chosen splits, events checked exactly."""

from __future__ import annotations

import json

import pytest

from backends.sse import SSEDecoder, SSEError, SSEEvent


def decode(*chunks: bytes) -> tuple[list[SSEEvent], SSEDecoder]:
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    events.extend(decoder.flush())
    return events, decoder


def chunk_event(text: str) -> bytes:
    payload = {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


def test_single_event_in_one_read() -> None:
    events, _ = decode(b'data: {"a": 1}\n\n')

    assert events == [SSEEvent("message", b'{"a": 1}')]


def test_feed_returns_events_as_they_complete() -> None:
    decoder = SSEDecoder()

    assert decoder.feed(b"data: one\n") == []
    assert decoder.feed(b"\ndata: tw") == [SSEEvent("message", b"one")]
    assert decoder.feed(b"o\n\n") == [SSEEvent("message", b"two")]
    assert decoder.flush() == []


def test_event_split_at_every_offset() -> None:
    stream = chunk_event("héllo 你好 🙂") + chunk_event("second") + b"data: [DONE]\n\n"
    whole, _ = decode(stream)

    for offset in range(1, len(stream)):
        events, _ = decode(stream[:offset], stream[offset:])
        assert events == whole, f"split at byte {offset}"


def test_split_inside_multibyte_character_keeps_text() -> None:
    stream = chunk_event("你好")
    # The first byte of 你 opens a three-byte sequence; split right after it.
    offset = stream.index("你".encode()) + 1

    events, _ = decode(stream[:offset], stream[offset:])

    assert len(events) == 1
    assert json.loads(events[0].data)["choices"][0]["delta"]["content"] == "你好"


def test_byte_by_byte_feed() -> None:
    stream = chunk_event("a") + b": keep-alive\n\n" + chunk_event("é") + b"data: [DONE]\n\n"

    events, decoder = decode(*(stream[index : index + 1] for index in range(len(stream))))

    texts = [json.loads(event.data)["choices"][0]["delta"]["content"] for event in events[:2]]
    assert texts == ["a", "é"]
    assert events[2] == SSEEvent("message", b"[DONE]")
    assert decoder.comments == 1


def test_keepalive_and_bare_comments_are_ignored() -> None:
    events, decoder = decode(b": keep-alive\n\n:\n\n" + b"data: x\n\n" + b": keep-alive\n\n")

    assert events == [SSEEvent("message", b"x")]
    assert decoder.comments == 3


def test_comment_inside_event_does_not_end_it() -> None:
    events, _ = decode(b"data: a\n: ping\ndata: b\n\n")

    assert events == [SSEEvent("message", b"a\nb")]


def test_multiple_data_lines_join_with_newline() -> None:
    events, _ = decode(b"data: first\ndata: second\ndata:\n\n")

    assert events == [SSEEvent("message", b"first\nsecond\n")]


def test_crlf_line_endings() -> None:
    events, _ = decode(b"data: a\r\n\r\ndata: b\r\n\r\n")

    assert events == [SSEEvent("message", b"a"), SSEEvent("message", b"b")]


def test_crlf_split_between_reads() -> None:
    events, _ = decode(b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n")

    assert events == [SSEEvent("message", b"a"), SSEEvent("message", b"b")]


def test_cr_only_line_endings() -> None:
    events, _ = decode(b"data: a\r\rdata: b\r", b"\r")

    assert events == [SSEEvent("message", b"a"), SSEEvent("message", b"b")]


def test_event_field_sets_type_for_one_event() -> None:
    events, _ = decode(b'event: error\ndata: {"error": {}}\n\ndata: next\n\n')

    assert events == [SSEEvent("error", b'{"error": {}}'), SSEEvent("message", b"next")]


def test_event_type_without_data_is_dropped() -> None:
    events, _ = decode(b"event: ping\n\ndata: x\n\n")

    assert events == [SSEEvent("message", b"x")]


def test_data_without_space_after_colon() -> None:
    events, _ = decode(b"data:x\n\ndata:  y\n\n")

    # Only one leading space belongs to the syntax; a second one is data.
    assert events == [SSEEvent("message", b"x"), SSEEvent("message", b" y")]


def test_data_field_without_colon_is_empty_line() -> None:
    events, _ = decode(b"data\ndata: z\n\n")

    assert events == [SSEEvent("message", b"\nz")]


def test_id_field_is_recorded() -> None:
    events, decoder = decode(b"id: 42\ndata: x\n\n")

    assert events == [SSEEvent("message", b"x")]
    assert decoder.last_event_id == "42"


def test_unknown_fields_are_ignored() -> None:
    events, _ = decode(b"retry: 1000\nfoo: bar\ndata: x\n\n")

    assert events == [SSEEvent("message", b"x")]


def test_blank_lines_without_data_dispatch_nothing() -> None:
    events, _ = decode(b"\n\n\n\n")

    assert events == []


def test_done_marker_is_plain_data() -> None:
    events, _ = decode(b"data: [DONE]\n\n")

    assert events == [SSEEvent("message", b"[DONE]")]


def test_flush_dispatches_unterminated_last_event() -> None:
    events, _ = decode(b"data: a\n\ndata: [DONE]")

    assert events == [SSEEvent("message", b"a"), SSEEvent("message", b"[DONE]")]


def test_flush_dispatches_event_missing_blank_line() -> None:
    events, _ = decode(b"data: [DONE]\n")

    assert events == [SSEEvent("message", b"[DONE]")]


def test_flush_keeps_truncated_data_for_caller_to_reject() -> None:
    events, _ = decode(b'data: {"choices": [{"delta')

    assert events == [SSEEvent("message", b'{"choices": [{"delta')]


def test_byte_order_mark_is_stripped() -> None:
    events, _ = decode(b"\xef\xbb\xbfdata: x\n\n")

    assert events == [SSEEvent("message", b"x")]


def test_byte_order_mark_split_across_reads() -> None:
    events, _ = decode(b"\xef", b"\xbb", b"\xbfdata: x\n\n")

    assert events == [SSEEvent("message", b"x")]


def test_byte_order_mark_only_at_stream_start() -> None:
    events, _ = decode(b"data: a\n\n", b"\xef\xbb\xbfdata: b\n\n")

    # A BOM after the start is not stripped, so the second line is an unknown field.
    assert events == [SSEEvent("message", b"a")]


def test_line_over_limit_raises() -> None:
    decoder = SSEDecoder(max_event_bytes=100)

    with pytest.raises(SSEError, match="exceeds 100 bytes"):
        decoder.feed(b"data: " + b"x" * 200)


def test_event_over_limit_raises() -> None:
    decoder = SSEDecoder(max_event_bytes=100)

    with pytest.raises(SSEError, match="exceeds 100 bytes"):
        decoder.feed(b"data: " + b"x" * 60 + b"\n" + b"data: " + b"y" * 60 + b"\n")


def test_events_under_limit_pass_one_after_another() -> None:
    decoder = SSEDecoder(max_event_bytes=100)
    events: list[SSEEvent] = []

    for _ in range(5):
        events.extend(decoder.feed(b"data: " + b"x" * 80 + b"\n\n"))

    assert events == [SSEEvent("message", b"x" * 80)] * 5
