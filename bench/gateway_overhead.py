"""Gateway overhead: what the HTTP API adds to a reply, measured without the network.

    .venv/bin/python bench/gateway_overhead.py [--runs 300] [--chunks 10]

One scripted backend streams a reply of `--chunks` words with no delay. The
same request goes, one after another in this process:

    (a) through the router (resilience layers included), as the chat tab calls it;
    (b) through the gateway's ASGI app (`app.build_app`, without the UI) for
        POST /v1/chat/completions with stream=true: body parsing, checks,
        the router, SSE encoding and the disconnect watch, but no socket;
    (c) the same as (b) with stream=false.

The ASGI app is called directly with an in-memory receive/send pair, so the
figures show Parley's own cost; uvicorn and the kernel's loopback add the same
to any ASGI app. "first chunk" is the time to the first content chunk (for (c),
to the response body). The cache is bypassed, as with Cache-Control: no-cache.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app import build_app  # noqa: E402
from backends.registry import BackendContext  # noqa: E402
from backends.types import ChatRequest, Message  # noqa: E402
from config import parse_config  # noqa: E402

# One measured request: (seconds to the first chunk, seconds in total).
Measurement = tuple[float, float]


def scripted_config(chunks: int) -> dict[str, Any]:
    reply = " ".join(f"w{index}" for index in range(chunks))
    backend = {"name": "bench", "kind": "scripted", "models": [{"name": "bench-model"}], "replies": [{"text": reply}]}
    return {"backends": [backend]}


def asgi_client(app: Any, stream: bool) -> Callable[[], Awaitable[Measurement]]:
    body = json.dumps({"model": "bench-model", "messages": [{"role": "user", "content": "go"}], "stream": stream}).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"cache-control", b"no-cache")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 7860),
    }

    async def call() -> Measurement:
        pending = [{"type": "http.request", "body": body, "more_body": False}]
        finished = asyncio.Event()
        first: float | None = None
        started = time.perf_counter()

        async def receive() -> dict[str, Any]:
            if pending:
                return pending.pop()
            # Like a server, report the disconnect only once the response is over.
            await finished.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal first
            if message["type"] != "http.response.body":
                return
            if first is None and message.get("body"):
                first = time.perf_counter() - started
            if not message.get("more_body"):
                finished.set()

        await app({**scope, "state": {}}, receive, send)
        assert first is not None
        return first, time.perf_counter() - started

    return call


def router_client(app: Any) -> Callable[[], Awaitable[Measurement]]:
    router = app.state.parley_api.router
    request = ChatRequest(messages=(Message.text("user", "go"),), model="bench-model", bypass_cache=True)

    async def call() -> Measurement:
        first: float | None = None
        started = time.perf_counter()
        async for _event in router.stream(request):
            if first is None:
                first = time.perf_counter() - started
        assert first is not None
        return first, time.perf_counter() - started

    return call


async def measure(call: Callable[[], Awaitable[Measurement]], runs: int) -> tuple[float, float, float]:
    """Return the median first-chunk and total times in ms, and the CPU time per request in ms."""
    for _ in range(max(10, runs // 10)):
        await call()
    cpu_started = time.process_time()
    results = [await call() for _ in range(runs)]
    cpu_ms = (time.process_time() - cpu_started) / runs * 1000
    return statistics.median(r[0] for r in results) * 1000, statistics.median(r[1] for r in results) * 1000, cpu_ms


async def run(runs: int, chunks: int) -> None:
    config = parse_config(scripted_config(chunks), source="bench", env={})
    app = build_app(config, context=BackendContext(env={}), ui=False, preload_models=False)
    clients = [
        ("(a) router, layers included", router_client(app)),
        ("(b) gateway ASGI app, stream=true", asgi_client(app, stream=True)),
        ("(c) gateway ASGI app, stream=false", asgi_client(app, stream=False)),
    ]

    rows = [(label, *await measure(call, runs)) for label, call in clients]
    await app.state.parley_api.router.aclose()

    print(f"Gateway overhead: {chunks} chunks per reply, median of {runs} runs, no network")
    print(f"Python {platform.python_version()}, {platform.machine()}")
    print()
    print("| path | first chunk ms | total ms | CPU ms/request |")
    print("|---|---:|---:|---:|")
    for label, first_ms, total_ms, cpu_ms in rows:
        print(f"| {label} | {first_ms:.3f} | {total_ms:.3f} | {cpu_ms:.3f} |")
    added = rows[1][1] - rows[0][1]
    print()
    print(f"The gateway adds {added:.3f} ms to the first chunk (goal: at most 5 ms).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300, help="Measured requests per path, after a warm-up.")
    parser.add_argument("--chunks", type=int, default=10, help="Words in the scripted reply, one chunk each.")
    args = parser.parse_args()
    asyncio.run(run(args.runs, args.chunks))


if __name__ == "__main__":
    main()
