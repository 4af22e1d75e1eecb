"""The first-token, chunk-gap and total deadlines of one upstream request.

httpx's read timeout restarts on every byte, so a server that sends only
keep-alive comments would never time out. `Deadlines` measures progress in
content deltas instead, and only the caller says what counts as one.

Reading a stream is the hot path: a reply arrives as thousands of small
chunks, and a fresh `asyncio.timeout()` per chunk costs a timer handle each
time. `Deadlines.read()` keeps one timer instead. The timer re-arms itself
when progress has moved the deadline on, and cancels the reading task only
while that task waits inside the read. It never cancels while the caller's
own code runs between two chunks, and the time the caller spends there does
not count against the first-token and chunk-gap deadlines: a slow consumer
is not the server's fault. The total timeout counts all time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from backends.errors import UpstreamTimeoutError
from backends.settings import Timeouts


class Deadlines:
    """The deadlines of one request, on the event loop's clock."""

    __slots__ = (
        "timeouts",
        "start",
        "first_token_due",
        "last_progress",
        "started",
        "whole_body",
        "drain_until",
        "_backend",
        "_model",
        "_loop",
        "_task",
        "_handle",
        "_reading",
        "_fired",
    )

    def __init__(self, timeouts: Timeouts, *, backend: str, model: str) -> None:
        self._loop = asyncio.get_running_loop()
        self.timeouts = timeouts
        self.start = self._loop.time()
        self.first_token_due = self.start + timeouts.first_token
        self.last_progress = self.start
        self.started = False
        # A reply sent as one JSON body is bounded by the total timeout only.
        self.whole_body = False
        # Set once the reply is complete: the rest of the body is read until then, and a timeout ends reading quietly.
        self.drain_until: float | None = None
        self._backend = backend
        self._model = model
        self._task: asyncio.Task[object] | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._reading = False
        self._fired = False

    def next(self) -> float:
        """Return the loop time by which the next content delta is due."""
        if self.drain_until is not None:
            return self.drain_until
        total = self.start + self.timeouts.total
        if self.whole_body:
            return total
        if self.started:
            return min(self.last_progress + self.timeouts.chunk_gap, total)
        return min(self.first_token_due, total)

    def progress(self, now: float) -> None:
        """Record a content delta received at loop time `now`."""
        self.last_progress = now
        if not self.started:
            self.started = True
            # The chunk-gap deadline may fall before the first-token one.
            self._arm()

    def drain(self, seconds: float) -> None:
        """Mark the reply complete; reading on ends quietly after `seconds`."""
        self.drain_until = self._loop.time() + seconds
        self._arm()

    def expired(self) -> UpstreamTimeoutError:
        """Build the error for the deadline that passed."""
        common: dict[str, Any] = {"backend": self._backend, "model": self._model}
        if self._loop.time() >= self.start + self.timeouts.total:
            return UpstreamTimeoutError(f"the reply took longer than the total timeout of {self.timeouts.total:g} s", **common)
        if self.started:
            return UpstreamTimeoutError(f"no new chunk for {self.timeouts.chunk_gap:g} s", **common)
        return UpstreamTimeoutError(f"no first token within {self.timeouts.first_token:g} s (keep-alive comments do not count)", **common)

    async def read(self, chunks: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
        """Yield chunks until the body ends; raises UpstreamTimeoutError when a deadline passes."""
        loop = self._loop
        try:
            while True:
                if self._handle is None:
                    self._arm()
                # Each read may run in another task: the gateway reads the first
                # event in one task and streams the rest of the reply from another.
                task = asyncio.current_task()
                assert task is not None
                self._task = task
                cancelling = task.cancelling()
                self._reading = True
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    return
                except asyncio.CancelledError:
                    # Only a cancellation of ours, with no other one pending, becomes a timeout.
                    if self._fired and task.uncancel() <= cancelling:
                        if self.drain_until is not None:
                            return
                        raise self.expired() from None
                    raise
                finally:
                    self._reading = False

                yielded_at = loop.time()
                yield chunk
                # Time spent in the caller's code moves the deadlines on by as much.
                paused = loop.time() - yielded_at
                self.first_token_due += paused
                self.last_progress += paused
        finally:
            if self._handle is not None:
                self._handle.cancel()
                self._handle = None
            self._task = None

    def _arm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._loop.call_at(self.next(), self._on_timer)

    def _on_timer(self) -> None:
        self._handle = None
        due = self.next()
        if self._loop.time() < due:
            # Progress moved the deadline on since the timer was set.
            self._handle = self._loop.call_at(due, self._on_timer)
            return
        if self._reading and self._task is not None:
            self._fired = True
            self._task.cancel()
        # Otherwise the caller's code is running; the next read arms the timer again and it fires at once.
