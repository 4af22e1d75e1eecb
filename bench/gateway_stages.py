"""Stage split of the gateway's time to the first chunk, for `bench/stream_overhead.py --stages`.

The gateway process wraps its ASGI app in `StageRecorder` and its upstream
HTTP transport in `TimedTransport`. Each chat request then appends one JSON
line to a log file with the moments it passed each stage. The bench's client
adds its own moments, and `print_stage_split` prints the medians.

All moments are `time.perf_counter()` values. On Linux that clock is
CLOCK_MONOTONIC, which every process on the machine shares, so moments from
the client and the gateway process can be subtracted.
"""

from __future__ import annotations

import json
import statistics
from contextvars import ContextVar
from pathlib import Path
from time import perf_counter, thread_time
from typing import Any

import httpx

# The record of the request being served; the upstream transport writes into it.
_RECORD: ContextVar[dict[str, float] | None] = ContextVar("stage_record", default=None)


def thread_cpu_and_wait() -> tuple[float, float]:
    """Return the calling thread's seconds on a CPU and seconds runnable but waiting for one.

    The CPU time comes from the thread's CPU clock. The wait comes from
    /proc/thread-self/schedstat, which the kernel updates each time the thread
    gets a CPU, so it is exact whenever the thread itself reads it. Linux only.
    """
    with open("/proc/thread-self/schedstat") as stats:
        _on_cpu, waiting, _slices = stats.read().split()
    return thread_time(), int(waiting) / 1e9


def thread_sleeps() -> int:
    """Return how often the calling thread has blocked so far (its voluntary context switches)."""
    with open("/proc/thread-self/status") as status:
        for line in status:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    return 0


def mark(record: dict[str, float], key: str) -> None:
    """Record the moment `key`, with this thread's CPU seconds, run-queue seconds and sleeps so far."""
    record[key] = perf_counter()
    record[f"{key}_cpu"], record[f"{key}_wait"] = thread_cpu_and_wait()
    record[f"{key}_sleeps"] = thread_sleeps()


class TimedTransport(httpx.AsyncHTTPTransport):
    """Records when the upstream request is handed to httpcore and when its response headers are back."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        record = _RECORD.get()
        if record is not None:
            mark(record, "upstream_sent")
        response = await super().handle_async_request(request)
        if record is not None:
            mark(record, "upstream_headers")
        return response


class StageRecorder:
    """ASGI wrapper that logs the stages of every POST to `path` as one JSON line in `log_path`."""

    def __init__(self, app: Any, log_path: Path, path: str = "/v1/chat/completions") -> None:
        self.app = app
        self.log_path = log_path
        self.path = path

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return

        record: dict[str, float] = {}
        mark(record, "arrived")
        token = _RECORD.set(record)

        async def timed_receive() -> dict[str, Any]:
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request" and "body_read" not in record:
                mark(record, "body_read")
            return message

        async def timed_send(message: dict[str, Any]) -> None:
            await send(message)
            if message["type"] == "http.response.start":
                record["response_started"] = perf_counter()
            elif message["type"] == "http.response.body" and message.get("body") and "first_body_sent" not in record:
                mark(record, "first_body_sent")
                record["gateway_cpu"] = record["first_body_sent_cpu"] - record["arrived_cpu"]
                record["gateway_wait"] = record["first_body_sent_wait"] - record["arrived_wait"]

        try:
            await self.app(scope, timed_receive, timed_send)
        finally:
            _RECORD.reset(token)
            # Written after the response, so the file write is not part of any stage.
            with self.log_path.open("a") as log:
                log.write(json.dumps(record) + "\n")


def read_records(log_path: Path) -> list[dict[str, float]]:
    if not log_path.exists():
        return []
    return [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]


# (label, start key, end key): client keys are "sent" and "first_chunk".
STAGES = [
    ("client builds and sends the request; the gateway's ASGI app is called", "sent", "arrived"),
    ("the gateway waits for the request body", "arrived", "body_read"),
    ("body parsing, checks, router, layers, backend request until httpx sends it", "body_read", "upstream_sent"),
    ("upstream answers with its response headers", "upstream_sent", "upstream_headers"),
    ("first event through backend and layers, response start, first body write", "upstream_headers", "first_body_sent"),
    ("loopback, client wake-up and SDK parsing until the first chunk", "first_body_sent", "first_chunk"),
]


def print_stage_split(direct: list[dict[str, float]], gateway: list[dict[str, float]], load: float) -> None:
    """Print the median of every stage; `direct` and `gateway` hold one merged client+gateway record a run."""

    def median_ms(records: list[dict[str, float]], start: str, end: str) -> float:
        return statistics.median(record[end] - record[start] for record in records) * 1000

    print()
    print(f"Stage split, openai SDK client, median of {len(gateway)} interleaved runs of (c) and (d), load average {load:.2f}")
    print()
    print("For the stages inside the gateway, the last three columns are its event-loop thread's")
    print("CPU time, its wait in the run queue for a CPU, and the share of runs in which it blocked")
    print("(went to sleep) at least once.")
    print()
    print(f"| {'stage':<78} | {'ms':>6} | {'CPU ms':>6} | {'wait ms':>7} | {'blocked':>7} |")
    print(f"|{'-' * 80}|{'-' * 7}:|{'-' * 7}:|{'-' * 8}:|{'-' * 8}:|")
    rows: list[tuple[str, float, tuple[float, float, float] | None]] = [
        ("(c) SDK direct to the upstream: time to the first chunk", median_ms(direct, "sent", "first_chunk"), None),
        ("(d) SDK through the gateway: time to the first chunk", median_ms(gateway, "sent", "first_chunk"), None),
    ]
    for label, start, end in STAGES:
        inside: tuple[float, float, float] | None = None
        if f"{start}_cpu" in gateway[0] and f"{end}_cpu" in gateway[0]:
            blocked = sum(record[f"{end}_sleeps"] > record[f"{start}_sleeps"] for record in gateway) / len(gateway)
            inside = (median_ms(gateway, f"{start}_cpu", f"{end}_cpu"), median_ms(gateway, f"{start}_wait", f"{end}_wait"), blocked)
        rows.append((f"(d) {label}", median_ms(gateway, start, end), inside))
    totals = [
        ("(c) client's run-queue wait until the first chunk", statistics.median(r["client_wait"] for r in direct) * 1000),
        ("(d) client's run-queue wait until the first chunk", statistics.median(r["client_wait"] for r in gateway) * 1000),
        ("(c) client's CPU time until the first chunk", statistics.median(r["client_cpu"] for r in direct) * 1000),
        ("(d) client's CPU time until the first chunk", statistics.median(r["client_cpu"] for r in gateway) * 1000),
        ("(d) gateway's CPU time, request arrival to first body write", statistics.median(r["gateway_cpu"] for r in gateway) * 1000),
        ("(d) gateway's run-queue wait, request arrival to first body write", statistics.median(r["gateway_wait"] for r in gateway) * 1000),
    ]
    rows += [(label, value, None) for label, value in totals]

    for label, value, inside in rows:
        extra = f"{inside[0]:>6.2f} | {inside[1]:>7.2f} | {inside[2]:>7.0%}" if inside else f"{'':>6} | {'':>7} | {'':>7}"
        print(f"| {label:<78} | {value:>6.2f} | {extra} |")
