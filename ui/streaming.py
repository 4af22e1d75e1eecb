"""Pace a model's event stream into UI updates.

Every yield of a Gradio handler post-processes and diffs the whole chat
history, so yielding per token makes long chats slow. `paced()` applies
each event at once but yields at most once per `interval` (plus a yield
every `heartbeat` while no tokens arrive, so Gradio notices a closed tab
and closes the handler), and always closes the upstream stream.

`StreamLoad` counts the replies streaming at once and widens the interval
when together they would exceed a maximum total rate of updates.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator

from backends.types import Event, Notice


class StreamLoad:
    """The replies streaming at once, and the update interval that keeps their total rate bounded."""

    def __init__(self, max_updates_per_second: float) -> None:
        if max_updates_per_second <= 0:
            raise ValueError(f"max_updates_per_second must be positive, got {max_updates_per_second}")
        self.max_updates_per_second = max_updates_per_second
        self.active = 0

    @contextlib.contextmanager
    def streaming(self) -> Iterator[None]:
        """Count one reply as streaming while the block runs."""
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1

    def interval(self, least: float) -> float:
        """Return the seconds between updates of one reply: `least`, or more when many replies stream at once.

        A `least` of 0 turns pacing off and stays 0.
        """
        if not least:
            return 0.0
        return max(least, self.active / self.max_updates_per_second)


async def paced(
    stream: AsyncIterator[Event],
    apply: Callable[[Event], None],
    *,
    interval: float | Callable[[], float],
    heartbeat: float,
    stop: asyncio.Event | None = None,
) -> AsyncGenerator[None, None]:
    """Apply every event of `stream` with `apply`; yield whenever the UI should refresh.

    The first refresh comes with the first event, or one interval after the
    start when no event has arrived by then, so a quick first token is not
    preceded by a refresh that shows only the waiting state. A Notice
    refreshes at once. `interval` may be a callable, read before each wait,
    so the spacing can follow the load. The caller renders once more after
    the loop ends for the final state.

    One task reads the stream and applies its events, so a token costs no
    task or timer of its own. Closing this generator (Stop, a closed tab)
    cancels that task, which throws CancelledError into the stream at its
    current await, and then calls `aclose()` on `stream`, which releases the
    upstream request. A ParleyError from the stream propagates after the
    events before it were applied. Setting `stop` ends the loop the same way,
    but as a normal return, so the caller can render the stopped state.
    """
    loop = asyncio.get_running_loop()
    spacing = interval if callable(interval) else (lambda: interval)
    wakeup: asyncio.Future[None] = loop.create_future()
    dirty = False
    urgent = False

    def wake() -> None:
        if not wakeup.done():
            wakeup.set_result(None)

    async def read() -> None:
        nonlocal dirty, urgent
        async for event in stream:
            apply(event)
            # Wake the refresh loop only when the event can make the next refresh
            # earlier; tokens that arrive while one is pending just join it.
            if not dirty or isinstance(event, Notice):
                wake()
            dirty = True
            urgent = urgent or isinstance(event, Notice)

    reader = asyncio.ensure_future(read())
    reader.add_done_callback(lambda _: wake())
    stop_waiter = asyncio.ensure_future(stop.wait()) if stop is not None else None
    if stop_waiter is not None:
        stop_waiter.add_done_callback(lambda _: wake())
    started = loop.time()
    last_yield: float | None = None
    try:
        while True:
            now = loop.time()
            if stop is not None and stop.is_set():
                return
            if reader.done():
                # This raises the stream's error, if there was one.
                # Otherwise the caller renders the final state.
                reader.result()
                return

            gap = spacing()
            if last_yield is None:
                # Before the first refresh, an event refreshes at once.
                # Without an event, the waiting state shows after one interval.
                due = now if dirty else started + gap
            elif dirty:
                due = now if urgent else last_yield + gap
            else:
                due = last_yield + heartbeat

            if now >= due:
                dirty = urgent = False
                yield None
                last_yield = loop.time()
                continue

            if wakeup.done():
                wakeup = loop.create_future()
            await asyncio.wait({wakeup}, timeout=due - now)
    finally:
        if stop_waiter is not None:
            stop_waiter.cancel()
        if not reader.done():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
