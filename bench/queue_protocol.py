"""A client of Gradio's queue protocol that reads events the way the browser does.

Gradio 6's browser client joins the queue with one POST and reads the
session's Server-Sent Events as they arrive. gradio_client 2.7.2 reads the
same stream in a reader thread, but the thread that hands each job's
messages to the caller checks for new ones every 50 ms
(`time.sleep(0.05)` in `gradio_client.utils.stream_sse_v1plus`). This
client has no such delay: it timestamps every event when the stream reader
gets it, so a benchmark can tell the server's time from gradio_client's.

Only what the benchmarks need is here: one event per session, JSON
outputs, and the diffs of streamed outputs (protocol "sse_v3").
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from gradio_client.utils import apply_diff


@dataclass
class Arrival:
    """One queue message as the stream reader got it: monotonic seconds, kind, outputs so far."""

    at: float
    msg: str
    outputs: list[Any] | None = None


@dataclass
class Timeline:
    """The moments of one queued call, in `time.monotonic()` seconds.

    CLOCK_MONOTONIC is system-wide on Linux, so these compare with the
    server process's own `time.monotonic()` stamps.
    """

    join_sent: float
    join_answered: float = 0.0
    stream_opened: float = 0.0
    arrivals: list[Arrival] = field(default_factory=list)
    error: str | None = None

    def first(self, predicate: Callable[[Arrival], bool]) -> Arrival | None:
        """Return the first arrival that matches `predicate`, or None."""
        return next((arrival for arrival in self.arrivals if predicate(arrival)), None)

    @property
    def final_outputs(self) -> list[Any] | None:
        completed = self.first(lambda arrival: arrival.msg == "process_completed")
        return completed.outputs if completed is not None else None


def endpoint_index(url: str, api_name: str) -> int:
    """Return the fn_index of the event named `api_name` in the app's /config."""
    config = httpx.get(url + "/config", timeout=10).json()
    for dependency in config["dependencies"]:
        if dependency.get("api_name") == api_name:
            return int(dependency["id"])
    raise LookupError(f"the app at {url} has no event with api_name {api_name!r}")


def new_session() -> str:
    """Return a new session hash, as a browser tab makes one when it opens the page."""
    return uuid.uuid4().hex[:11]


async def call(http: httpx.AsyncClient, url: str, fn_index: int, inputs: list[Any], session: str) -> Timeline:
    """Join the queue with `inputs` in `session`, read the session's events until the call completes, and time each one.

    Streamed outputs arrive as diffs against the previous update; each
    arrival carries the outputs with the diffs applied. A failed join or
    an error message from the server is stored in `Timeline.error`.
    """
    timeline = Timeline(join_sent=time.monotonic())
    joined = await http.post(
        url + "/gradio_api/queue/join",
        json={"data": inputs, "fn_index": fn_index, "session_hash": session, "event_data": None, "trigger_id": None},
    )
    timeline.join_answered = time.monotonic()
    if joined.status_code != 200:
        timeline.error = f"join: HTTP {joined.status_code}: {joined.text[:200]}"
        return timeline

    outputs: list[Any] | None = None
    async with http.stream("GET", url + "/gradio_api/queue/data", params={"session_hash": session}) as response:
        timeline.stream_opened = time.monotonic()
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            at = time.monotonic()
            message = json.loads(line[5:])
            kind = str(message.get("msg"))
            if kind == "heartbeat":
                continue
            data = (message.get("output") or {}).get("data")
            if kind == "process_generating" and data is not None:
                outputs = list(data) if outputs is None else [apply_diff(old, diff) for old, diff in zip(outputs, data, strict=True)]
            elif kind == "process_completed" and data is not None:
                outputs = list(data)
            timeline.arrivals.append(Arrival(at=at, msg=kind, outputs=outputs))
            if kind == "process_completed" and not message.get("success", True):
                timeline.error = f"server error: {str(message.get('output'))[:200]}"
            if kind in ("process_completed", "close_stream", "unexpected_error"):
                if kind == "unexpected_error":
                    timeline.error = f"unexpected error: {message.get('message')}"
                break
    return timeline
