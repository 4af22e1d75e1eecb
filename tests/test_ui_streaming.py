"""Pacing a model's event stream into UI updates: `paced()` and `StreamLoad`.

The streams here are fed by the test through a queue, so each check
depends on the order of events, never on how fast the machine is. A
`wait_for` guard turns a missing refresh into a failure instead of a hang.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from backends.errors import StreamIncompleteError
from backends.types import Event, Notice, TextDelta
from ui.streaming import StreamLoad, paced

# Far longer than any test waits: a refresh that waited for it would trip the guard.
LONG = 600.0
GUARD = 10.0


class FedStream:
    """An event stream that yields what the test puts in; None ends it, an exception is raised."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Event | Exception | None] = asyncio.Queue()
        self.closed = False

    async def events(self) -> AsyncIterator[Event]:
        try:
            while True:
                item = await self.queue.get()
                if item is None:
                    return
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            self.closed = True


async def next_refresh(ticks: AsyncIterator[None]) -> None:
    await asyncio.wait_for(anext(ticks), timeout=GUARD)


async def test_first_event_refreshes_at_once() -> None:
    fed = FedStream()
    applied: list[Event] = []
    ticks = paced(fed.events(), applied.append, interval=LONG, heartbeat=LONG)

    await fed.queue.put(TextDelta("first"))
    await next_refresh(ticks)

    assert applied == [TextDelta("first")]
    await ticks.aclose()


async def test_waiting_state_refreshes_after_one_interval() -> None:
    fed = FedStream()
    applied: list[Event] = []
    ticks = paced(fed.events(), applied.append, interval=0.01, heartbeat=LONG)

    # No event yet: the first refresh shows the waiting state.
    await next_refresh(ticks)

    assert applied == []
    await ticks.aclose()


async def test_tokens_within_interval_join_one_refresh() -> None:
    fed = FedStream()
    applied: list[Event] = []
    ticks = paced(fed.events(), applied.append, interval=LONG, heartbeat=LONG)
    await fed.queue.put(TextDelta("a"))
    await next_refresh(ticks)

    for text in ("b", "c", "d"):
        await fed.queue.put(TextDelta(text))
    await fed.queue.put(None)
    rest = [tick async for tick in ticks]

    # The stream ended before the interval passed: no refresh for b, c, d; the caller renders the end.
    assert rest == []
    assert applied == [TextDelta("a"), TextDelta("b"), TextDelta("c"), TextDelta("d")]
    assert fed.closed


async def test_notice_refreshes_within_interval() -> None:
    fed = FedStream()
    applied: list[Event] = []
    ticks = paced(fed.events(), applied.append, interval=LONG, heartbeat=LONG)
    await fed.queue.put(TextDelta("a"))
    await next_refresh(ticks)

    notice = Notice("retrying", "upstream: 503, attempt 2 of 3")
    await fed.queue.put(notice)
    await next_refresh(ticks)

    assert applied == [TextDelta("a"), notice]
    await ticks.aclose()


async def test_interval_callable_is_read_before_each_wait() -> None:
    fed = FedStream()
    applied: list[Event] = []
    spacing = [LONG]
    ticks = paced(fed.events(), applied.append, interval=lambda: spacing[0], heartbeat=LONG)
    await fed.queue.put(TextDelta("a"))
    await next_refresh(ticks)

    # The load dropped: the next token refreshes without waiting out the first spacing.
    spacing[0] = 0.0
    await fed.queue.put(TextDelta("b"))
    await next_refresh(ticks)

    assert applied == [TextDelta("a"), TextDelta("b")]
    await ticks.aclose()


async def test_heartbeat_refreshes_without_events() -> None:
    fed = FedStream()
    applied: list[Event] = []
    ticks = paced(fed.events(), applied.append, interval=0.0, heartbeat=0.01)

    for _ in range(3):
        await next_refresh(ticks)

    assert applied == []
    await ticks.aclose()


async def test_stream_error_propagates_after_earlier_events() -> None:
    fed = FedStream()
    applied: list[Event] = []
    ticks = paced(fed.events(), applied.append, interval=LONG, heartbeat=LONG)
    await fed.queue.put(TextDelta("kept"))
    await next_refresh(ticks)

    await fed.queue.put(StreamIncompleteError("the upstream closed the stream early"))
    with pytest.raises(StreamIncompleteError):
        await next_refresh(ticks)

    assert applied == [TextDelta("kept")]
    assert fed.closed


async def test_closing_cancels_pending_read_and_closes_stream() -> None:
    fed = FedStream()
    ticks = paced(fed.events(), lambda event: None, interval=LONG, heartbeat=LONG)
    await fed.queue.put(TextDelta("a"))
    await next_refresh(ticks)

    # The stream now waits for its next event, as an upstream that has not sent its next token yet.
    await ticks.aclose()

    assert fed.closed


def test_stream_load_keeps_interval_for_few_replies() -> None:
    load = StreamLoad(max_updates_per_second=200)

    with load.streaming():
        assert load.interval(0.06) == 0.06

    assert load.active == 0


def test_stream_load_spreads_updates_over_many_replies() -> None:
    load = StreamLoad(max_updates_per_second=200)
    replies = [load.streaming() for _ in range(50)]
    for reply in replies:
        reply.__enter__()

    # 50 replies sharing 200 updates per second: 4 each, one every 250 ms.
    assert load.interval(0.06) == pytest.approx(0.25)
    assert load.interval(0.0) == 0.0

    for reply in replies:
        reply.__exit__(None, None, None)
    assert load.active == 0


def test_stream_load_counts_down_after_an_error() -> None:
    load = StreamLoad(max_updates_per_second=200)

    with pytest.raises(RuntimeError), load.streaming():
        raise RuntimeError("the reply failed")

    assert load.active == 0


def test_stream_load_rejects_non_positive_rate() -> None:
    with pytest.raises(ValueError, match="max_updates_per_second"):
        StreamLoad(max_updates_per_second=0)


async def test_stop_event_ends_loop_and_closes_stream() -> None:
    fed = FedStream()
    stop = asyncio.Event()
    ticks = paced(fed.events(), lambda event: None, interval=LONG, heartbeat=LONG, stop=stop)
    await fed.queue.put(TextDelta("first"))
    await next_refresh(ticks)

    stop.set()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(ticks), timeout=GUARD)

    assert fed.closed
