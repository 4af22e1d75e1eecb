"""Stream overhead: how fast each client reads the same 2,000-chunk SSE reply.

    .venv/bin/python bench/stream_overhead.py [--chunks 2000] [--runs 15]

One local fake OpenAI-compatible server (tests/fakes/openai_server.py, in its
own process) streams the reply. The clients, measured one after another in
this process, are:

    (a)  raw httpx line reading: aiter_lines() and json.loads per data line
    (a0) raw httpx line reading without JSON parsing, as the floor
    (b)  Parley's openai backend (backends/openai_compat.py)
    (c)  the official openai SDK
    (d)  Parley's gateway (app.build_app served by uvicorn in its own process)
         end to end, with the openai SDK as its client

Each client reads one warm-up reply, then `--runs` replies. The table shows
the median time to the first content chunk and the median content chunks per
second over the whole reply (request start to end of stream). It also shows
the CPU time per chunk of this process, plus that of the gateway process for
(d). The CPU figure moves less than wall time when other work shares the
machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backends.openai_compat import Settings, create  # noqa: E402
from backends.registry import BackendContext  # noqa: E402
from backends.types import ChatRequest, Message, TextDelta  # noqa: E402

MODEL = "fake-model"
GATEWAY_MODEL = "bench-upstream"
PROMPT = "Count to two thousand."

# One run: (seconds to the first content chunk, content chunks, seconds in total).
Measurement = tuple[float, int, float]
Client = Callable[[], Awaitable[Measurement]]


@dataclass
class Row:
    label: str
    first_chunk_ms: float
    chunks_per_second: float
    cpu_us_per_chunk: float


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not respond within {timeout:g} s") from None
            time.sleep(0.1)


@contextmanager
def process(args: list[str], ready_url: str, env: dict[str, str] | None = None) -> Iterator[int]:
    """Run a helper process until the block ends; waits until `ready_url` responds and yields its pid."""
    child = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_http(ready_url)
        yield child.pid
    finally:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()


# Clients


def raw_httpx_client(base_url: str, *, parse_json: bool) -> Client:
    body = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "stream": True}
    client = httpx.AsyncClient(timeout=60)

    async def run() -> Measurement:
        start = time.perf_counter()
        first = 0.0
        count = 0
        async with client.stream("POST", f"{base_url}/chat/completions", json=body) as response:
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    break
                if parse_json:
                    choices = json.loads(data)["choices"]
                    if not choices or not choices[0]["delta"].get("content"):
                        continue
                elif '"content": ""' in data or '"delta": {}' in data:
                    continue
                count += 1
                if count == 1:
                    first = time.perf_counter() - start
        return first, count, time.perf_counter() - start

    return run


def parley_client(base_url: str) -> Client:
    settings = Settings.model_validate({"name": "bench", "base_url": base_url, "models": [{"name": MODEL}]})
    backend = create(settings, BackendContext())
    request = ChatRequest(messages=(Message.text("user", PROMPT),), model=MODEL)

    async def run() -> Measurement:
        start = time.perf_counter()
        first = 0.0
        count = 0
        async for event in backend.stream(request):
            if type(event) is TextDelta:
                count += 1
                if count == 1:
                    first = time.perf_counter() - start
        return first, count, time.perf_counter() - start

    return run


def openai_sdk_client(base_url: str, model: str, headers: dict[str, str] | None = None) -> Client:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key="bench-key", max_retries=0)

    async def run() -> Measurement:
        start = time.perf_counter()
        first = 0.0
        count = 0
        stream = await client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": PROMPT}],
            stream=True,
            extra_headers=headers,
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                count += 1
                if count == 1:
                    first = time.perf_counter() - start
        return first, count, time.perf_counter() - start

    return run


def process_cpu_seconds(pid: int | None) -> float:
    """Return the CPU time of this process, plus that of process `pid` when given."""
    seconds = time.process_time()
    if pid is not None:
        import psutil

        times = psutil.Process(pid).cpu_times()
        seconds += times.user + times.system
    return seconds


async def measure(label: str, client: Client, runs: int, expected: int, server_pid: int | None = None) -> Row:
    await client()
    firsts: list[float] = []
    rates: list[float] = []
    cpu_start = process_cpu_seconds(server_pid)
    for _ in range(runs):
        first, count, total = await client()
        if count != expected:
            raise RuntimeError(f"{label}: read {count} content chunks, expected {expected}")
        firsts.append(first)
        rates.append(count / total)
    cpu = process_cpu_seconds(server_pid) - cpu_start
    return Row(label, statistics.median(firsts) * 1000, statistics.median(rates), cpu / (runs * expected) * 1e6)


# The gateway, run in its own process by this script


def serve_gateway(upstream: str, port: int) -> None:
    import uvicorn

    from app import build_app
    from config import parse_config

    raw = {"backends": [{"name": "bench", "kind": "openai", "base_url": upstream, "models": [{"name": GATEWAY_MODEL, "upstream": MODEL}]}]}
    env = {name: value for name, value in os.environ.items() if name != "PARLEY_API_KEYS"}
    config = parse_config(raw, source="bench/stream_overhead.py", env=env)
    app = build_app(config, context=BackendContext(env=env))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# Report


def print_table(rows: list[Row], args: argparse.Namespace, missing: list[str]) -> None:
    import openai

    anchor = next(row for row in rows if row.label.startswith("(a) "))
    print(f"Stream overhead: {args.chunks} chunks per reply, median of {args.runs} runs, server batch {args.batch}")
    print(
        f"Python {platform.python_version()}, httpx {httpx.__version__}, openai {openai.__version__}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs"
    )
    print()
    print(f"| {'client':<50} | {'first chunk ms':>14} | {'chunks/s':>9} | {'vs (a)':>6} | {'CPU us/chunk':>12} | {'vs (a)':>6} |")
    print(f"|{'-' * 52}|{'-' * 15}:|{'-' * 10}:|{'-' * 7}:|{'-' * 13}:|{'-' * 7}:|")
    for row in rows:
        speed = row.chunks_per_second / anchor.chunks_per_second
        cost = row.cpu_us_per_chunk / anchor.cpu_us_per_chunk
        print(
            f"| {row.label:<50} | {row.first_chunk_ms:>14.2f} | {row.chunks_per_second:>9.0f} | {speed:>6.2f} "
            f"| {row.cpu_us_per_chunk:>12.1f} | {cost:>6.2f} |"
        )
    for label in missing:
        print(f"| {label:<50} | {'missing':>14} | {'':>9} | {'':>6} | {'':>12} | {'':>6} |")


async def run_clients(base_url: str, gateway: tuple[str, int] | None, args: argparse.Namespace) -> list[Row]:
    rows = [
        await measure("(a) raw httpx line reading + json.loads", raw_httpx_client(base_url, parse_json=True), args.runs, args.chunks),
        await measure("(a0) raw httpx line reading, no JSON (floor)", raw_httpx_client(base_url, parse_json=False), args.runs, args.chunks),
        await measure("(b) Parley openai backend", parley_client(base_url), args.runs, args.chunks),
        await measure("(c) official openai SDK", openai_sdk_client(base_url, MODEL), args.runs, args.chunks),
    ]
    if gateway is not None:
        gateway_url, gateway_pid = gateway
        # no-cache: every run must reach the upstream, not Parley's reply cache.
        client = openai_sdk_client(gateway_url, GATEWAY_MODEL, headers={"Cache-Control": "no-cache"})
        label = "(d) Parley gateway end to end, openai SDK client"
        rows.append(await measure(label, client, args.runs, args.chunks, server_pid=gateway_pid))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=2000, help="Content chunks in each reply.")
    parser.add_argument("--runs", type=int, default=15, help="Measured replies per client, after one warm-up reply.")
    parser.add_argument("--batch", type=int, default=1, help="SSE events the fake server writes per socket write.")
    parser.add_argument("--no-gateway", action="store_true", help="Skip (d), the gateway end to end.")
    parser.add_argument("--serve-gateway", metavar="UPSTREAM", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve_gateway:
        serve_gateway(args.serve_gateway, args.port)
        return

    server_port = free_port()
    base_url = f"http://127.0.0.1:{server_port}/v1"
    server = [sys.executable, "-m", "tests.fakes.openai_server", "--port", str(server_port), "--chunks", str(args.chunks), "--batch", str(args.batch)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with process(server, f"{base_url}/models", env):
        if args.no_gateway:
            rows = asyncio.run(run_clients(base_url, None, args))
            print_table(rows, args, ["(d) gateway end to end (skipped: --no-gateway)"])
            return

        gateway_port = free_port()
        gateway = [sys.executable, str(Path(__file__).resolve()), "--serve-gateway", base_url, "--port", str(gateway_port)]
        with process(gateway, f"http://127.0.0.1:{gateway_port}/healthz", env) as gateway_pid:
            rows = asyncio.run(run_clients(base_url, (f"http://127.0.0.1:{gateway_port}/v1", gateway_pid), args))
        print_table(rows, args, [])


if __name__ == "__main__":
    main()
