"""Pace a model's event stream into UI updates.

Every yield of a Gradio handler post-processes and diffs the whole chat
history, so yielding per token makes long chats slow. `paced()` applies
each event at once but yields at most once per `interval` (plus a yield
every `heartbeat` while no tokens arrive, so Gradio notices a closed tab
and closes the handler), and always closes the upstream stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable

from backends.types import Event, Notice


async def paced(
    stream: AsyncIterator[Event],
    apply: Callable[[Event], None],
    *,
    interval: float,
    heartbeat: float,
) -> AsyncGenerator[None, None]:
    """Apply every event of `stream` with `apply`; yield whenever the UI should refresh.

    A Notice refreshes at once. The caller renders once more after the loop
    ends for the final state. Closing this generator (Stop, a closed tab)
    cancels the pending read and calls `aclose()` on `stream`, which
    releases the upstream request; a ParleyError from the stream propagates
    after the events before it were applied.
    """
    loop = asyncio.get_running_loop()
    pending: asyncio.Future[Event] | None = None
    dirty = False
    last_yield = loop.time() - interval
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(stream))

            wait = (last_yield + interval if dirty else last_yield + heartbeat) - loop.time()
            done, _ = await asyncio.wait({pending}, timeout=max(wait, 0.0))

            if pending in done:
                finished, pending = pending, None
                try:
                    event = finished.result()
                except StopAsyncIteration:
                    return
                apply(event)
                dirty = True
                if not isinstance(event, Notice) and loop.time() - last_yield < interval:
                    continue

            yield None
            dirty = False
            last_yield = loop.time()
    finally:
        if pending is not None:
            # Cancelling the read throws CancelledError into the stream at its
            # current await, which runs its `finally` and closes the upstream.
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pending
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
