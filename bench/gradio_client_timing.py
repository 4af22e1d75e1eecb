"""Stamp when gradio_client's threads handle each queue message of a job.

gradio_client 2.7.2 hands a job's messages from its stream reader thread
to a polling thread through a deque per event id
(`Client.pending_messages_per_event`). `TimedDeques` replaces that
dict from the outside, so a benchmark records when the reader appended each
message and when the poller took it, without changing the library.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

Stamp = tuple[str, float, Any]


class TimedDeque(deque[Any]):
    """A job's message deque that logs ("append" | "popleft", time.monotonic(), message)."""

    def __init__(self, log: list[Stamp]) -> None:
        super().__init__()
        self.log = log

    def append(self, message: Any) -> None:
        self.log.append(("append", time.monotonic(), message))
        super().append(message)

    def popleft(self) -> Any:
        message = super().popleft()
        self.log.append(("popleft", time.monotonic(), message))
        return message


class TimedDeques(dict[str, Any]):
    """A stand-in for `Client.pending_messages_per_event` that hands out TimedDeques, one log per event id."""

    def __init__(self) -> None:
        super().__init__()
        self.logs: dict[str, list[Stamp]] = {}

    def _timed(self, event_id: str) -> TimedDeque:
        return TimedDeque(self.logs.setdefault(event_id, []))

    def __setitem__(self, event_id: str, value: Any) -> None:
        super().__setitem__(event_id, value if isinstance(value, TimedDeque) else self._timed(event_id))

    def setdefault(self, event_id: str, default: Any = None) -> Any:
        if event_id not in self:
            self[event_id] = self._timed(event_id)
        return self[event_id]


def stamps_of(log: list[Stamp], message: Any) -> tuple[float, float]:
    """Return when the reader appended `message` and when the poller took it."""
    appended = next(at for kind, at, logged in log if kind == "append" and logged is message)
    handed_over = next(at for kind, at, logged in log if kind == "popleft" and logged is message)
    return appended, handed_over
