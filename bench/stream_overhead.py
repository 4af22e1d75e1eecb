"""Stream overhead: how fast each client reads the same 2,000-chunk SSE reply.

    .venv/bin/python bench/stream_overhead.py [--chunks 2000] [--runs 15] [--rounds 1] [--stages]

One local fake OpenAI-compatible server (tests/fakes/openai_server.py, in its
own process) streams the reply. The clients, measured one after another in
this process, are:

    (a)  raw httpx line reading: aiter_lines() and json.loads per data line
    (a0) raw httpx line reading without JSON parsing, as the floor
    (b)  Parley's openai backend (backends/openai_compat.py)
    (c)  the official openai SDK
    (d0) a minimal pass-through proxy (uvicorn and httpx, no parsing) in its
         own process, with the openai SDK as its client: the cost of any
         Python proxy process in the path, as the anchor for (d)
    (d)  Parley's gateway (app.build_app served by uvicorn in its own process)
         end to end, with the openai SDK as its client

Each client reads one warm-up reply, then `--runs` replies. The table shows
the median time to the first content chunk and the median content chunks per
second over the whole reply (request start to end of stream). It also shows
the CPU time per chunk of this process, plus that of the proxy or gateway
process for (d0) and (d). The CPU figure moves less than wall time when other
work shares the machine. Before (d0) and (d) the bench waits until both
server processes are idle, since the gateway loads Whisper after start-up.

`--rounds N` measures (c), (d0) and (d) N-1 more times after the table and
prints one line a round. `--stages` starts a second gateway that logs when
each request passes each stage (bench/gateway_stages.py) and prints the
median stages of (d) from runs interleaved with (c).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backends.openai_compat import Settings, create  # noqa: E402
from backends.registry import BackendContext  # noqa: E402
from backends.types import ChatRequest, Message, TextDelta  # noqa: E402
from bench.gateway_stages import StageRecorder, TimedTransport, print_stage_split, read_records, thread_cpu_and_wait  # noqa: E402
from bench.processes import free_port, run_process, wait_until_idle  # noqa: E402

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


class OpenAISdkClient:
    """Reads replies with the official SDK; with `timings`, appends each run's moments for the stage split."""

    def __init__(
        self, base_url: str, model: str, headers: dict[str, str] | None = None, timings: list[dict[str, float]] | None = None
    ) -> None:
        from openai import AsyncOpenAI

        self._client = AsyncOpenAI(base_url=base_url, api_key="bench-key", max_retries=0)
        self._model = model
        self._headers = headers
        self._timings = timings

    async def __call__(self) -> Measurement:
        timings = self._timings
        cpu_at_start, wait_at_start = thread_cpu_and_wait() if timings is not None else (0.0, 0.0)
        start = time.perf_counter()
        first = 0.0
        count = 0
        stream = await self._client.chat.completions.create(
            model=self._model,
            messages=[{"role": "user", "content": PROMPT}],
            stream=True,
            extra_headers=self._headers,
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                count += 1
                if count == 1:
                    first = time.perf_counter() - start
                    if timings is not None:
                        cpu, wait = thread_cpu_and_wait()
                        moments = {"sent": start, "first_chunk": start + first}
                        timings.append({**moments, "client_cpu": cpu - cpu_at_start, "client_wait": wait - wait_at_start})
        return first, count, time.perf_counter() - start

    async def aclose(self) -> None:
        # Closed inside the event loop: the SDK's HTTP client otherwise closes itself after the loop is gone and logs an error.
        await self._client.close()


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


async def measure_sdk(label: str, client: OpenAISdkClient, runs: int, expected: int, server_pid: int | None = None) -> Row:
    """Measure like `measure`, then close the SDK client."""
    try:
        return await measure(label, client, runs, expected, server_pid)
    finally:
        await client.aclose()


# The gateway and the pass-through proxy, each run in its own process by this script


def serve_gateway(upstream: str, port: int, stage_log: str | None) -> None:
    """Serve Parley's app; with `stage_log`, log the stages of every chat request to that file."""
    import uvicorn

    from app import build_app
    from config import parse_config

    raw = {"backends": [{"name": "bench", "kind": "openai", "base_url": upstream, "models": [{"name": GATEWAY_MODEL, "upstream": MODEL}]}]}
    env = {name: value for name, value in os.environ.items() if name != "PARLEY_API_KEYS"}
    config = parse_config(raw, source="bench/stream_overhead.py", env=env)
    context = BackendContext(env=env, http_transport=TimedTransport() if stage_log else None)
    app = build_app(config, context=context)
    served: Any = StageRecorder(app, Path(stage_log)) if stage_log else app
    uvicorn.run(served, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def passthrough_app(upstream: str) -> Callable[[dict[str, Any], Any, Any], Awaitable[None]]:
    """Build a proxy that parses nothing: it sends the request body upstream and relays each body chunk as it arrives."""
    client = httpx.AsyncClient(timeout=60)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/healthz":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            return

        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        url = upstream + scope["path"].removeprefix("/v1")
        request = client.build_request("POST", url, content=body, headers={"content-type": "application/json"})
        response = await client.send(request, stream=True)
        try:
            headers = [(b"content-type", response.headers.get("content-type", "text/event-stream").encode())]
            await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()

    return app


def serve_proxy(upstream: str, port: int) -> None:
    import uvicorn

    uvicorn.run(passthrough_app(upstream), host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off")


@dataclass
class Servers:
    """The proxy of (d0) and the gateway of (d): each one's API root and process id."""

    proxy_url: str
    proxy_pid: int
    gateway_url: str
    gateway_pid: int


# One round of the (c), (d0) and (d) part: (load average at its start, the three rows).
Round = tuple[float, Row, Row, Row]


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


def print_rounds(rounds: list[Round]) -> None:
    """Print the first-chunk medians of every round of (c), (d0) and (d), and what (d) adds."""
    print()
    print("First chunk ms by round; round 1 is the table above. The goal: (d) - (c) under 5 ms.")
    print()
    print("| round | load average | (c) SDK | (d0) proxy | (d) gateway | (d) - (c) | (d) - (d0) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for number, (load, direct, proxy, gateway) in enumerate(rounds, start=1):
        added = gateway.first_chunk_ms - direct.first_chunk_ms
        over_proxy = gateway.first_chunk_ms - proxy.first_chunk_ms
        print(
            f"| {number} | {load:.2f} | {direct.first_chunk_ms:.2f} | {proxy.first_chunk_ms:.2f} | {gateway.first_chunk_ms:.2f} "
            f"| {added:+.2f} | {over_proxy:+.2f} |"
        )


# Runs

# no-cache: every run through the gateway must reach the upstream, not Parley's reply cache.
_NO_CACHE = {"Cache-Control": "no-cache"}


async def measure_round(base_url: str, servers: Servers, args: argparse.Namespace) -> Round:
    """Measure (c), (d0) and (d) once each, after both server processes have gone idle."""
    load = os.getloadavg()[0]
    direct = await measure_sdk("(c) official openai SDK", OpenAISdkClient(base_url, MODEL), args.runs, args.chunks)
    for pid in (servers.proxy_pid, servers.gateway_pid):
        wait_until_idle(pid)
    proxy_client = OpenAISdkClient(servers.proxy_url, MODEL)
    proxy = await measure_sdk("(d0) minimal pass-through proxy, openai SDK client", proxy_client, args.runs, args.chunks, servers.proxy_pid)
    gateway_client = OpenAISdkClient(servers.gateway_url, GATEWAY_MODEL, headers=_NO_CACHE)
    label = "(d) Parley gateway end to end, openai SDK client"
    gateway = await measure_sdk(label, gateway_client, args.runs, args.chunks, servers.gateway_pid)
    return load, direct, proxy, gateway


async def run_clients(base_url: str, servers: Servers | None, args: argparse.Namespace) -> tuple[list[Row], list[Round]]:
    rows = [
        await measure("(a) raw httpx line reading + json.loads", raw_httpx_client(base_url, parse_json=True), args.runs, args.chunks),
        await measure("(a0) raw httpx line reading, no JSON (floor)", raw_httpx_client(base_url, parse_json=False), args.runs, args.chunks),
        await measure("(b) Parley openai backend", parley_client(base_url), args.runs, args.chunks),
    ]
    if servers is None:
        rows.append(await measure_sdk("(c) official openai SDK", OpenAISdkClient(base_url, MODEL), args.runs, args.chunks))
        return rows, []

    rounds = [await measure_round(base_url, servers, args) for _ in range(args.rounds)]
    _load, direct, proxy, gateway = rounds[0]
    return [*rows, direct, proxy, gateway], rounds


async def run_stage_split(base_url: str, gateway_url: str, stage_log: Path, runs: int) -> None:
    """Alternate (c) and (d) requests, then merge the client's and the gateway's moments of each (d) run."""
    direct_timings: list[dict[str, float]] = []
    gateway_timings: list[dict[str, float]] = []
    direct = OpenAISdkClient(base_url, MODEL, timings=direct_timings)
    gateway = OpenAISdkClient(gateway_url, GATEWAY_MODEL, headers=_NO_CACHE, timings=gateway_timings)
    try:
        await direct()
        await gateway()
        direct_timings.clear()
        gateway_timings.clear()
        for _ in range(runs):
            await direct()
            await gateway()
    finally:
        await direct.aclose()
        await gateway.aclose()

    # The gateway writes its line after the response ends, which may be after the client has read it all.
    deadline = time.monotonic() + 10
    records = read_records(stage_log)
    while len(records) < runs + 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        records = read_records(stage_log)
    merged = [{**record, **timing} for record, timing in zip(records[-runs:], gateway_timings)]
    print_stage_split(direct_timings, merged, os.getloadavg()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=2000, help="Content chunks in each reply.")
    parser.add_argument("--runs", type=int, default=15, help="Measured replies per client, after one warm-up reply.")
    parser.add_argument("--batch", type=int, default=1, help="SSE events the fake server writes per socket write.")
    parser.add_argument("--rounds", type=int, default=1, help="Times to measure (c), (d0) and (d); rounds after the first print one line each.")
    parser.add_argument("--stages", action="store_true", help="Also print the median stages of (d)'s time to the first chunk.")
    parser.add_argument("--no-gateway", action="store_true", help="Skip (d0) and (d), the proxy and the gateway.")
    parser.add_argument("--serve-gateway", metavar="UPSTREAM", help=argparse.SUPPRESS)
    parser.add_argument("--serve-proxy", metavar="UPSTREAM", help=argparse.SUPPRESS)
    parser.add_argument("--stage-log", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve_gateway:
        serve_gateway(args.serve_gateway, args.port, args.stage_log)
        return
    if args.serve_proxy:
        serve_proxy(args.serve_proxy, args.port)
        return

    server_port = free_port()
    base_url = f"http://127.0.0.1:{server_port}/v1"
    server = [sys.executable, "-m", "tests.fakes.openai_server", "--port", str(server_port), "--chunks", str(args.chunks), "--batch", str(args.batch)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    script = str(Path(__file__).resolve())
    with run_process(server, f"{base_url}/models", env):
        if args.no_gateway:
            rows, _rounds = asyncio.run(run_clients(base_url, None, args))
            print_table(rows, args, ["(d0) pass-through proxy (skipped: --no-gateway)", "(d) gateway end to end (skipped: --no-gateway)"])
            return

        gateway_port = free_port()
        proxy_port = free_port()
        gateway = [sys.executable, script, "--serve-gateway", base_url, "--port", str(gateway_port)]
        proxy = [sys.executable, script, "--serve-proxy", base_url, "--port", str(proxy_port)]
        with (
            run_process(gateway, f"http://127.0.0.1:{gateway_port}/healthz", env) as gateway_pid,
            run_process(proxy, f"http://127.0.0.1:{proxy_port}/healthz", env) as proxy_pid,
        ):
            servers = Servers(f"http://127.0.0.1:{proxy_port}/v1", proxy_pid, f"http://127.0.0.1:{gateway_port}/v1", gateway_pid)
            rows, rounds = asyncio.run(run_clients(base_url, servers, args))
        print_table(rows, args, [])
        print_rounds(rounds)

        if args.stages:
            # A gateway of its own, so the stage log's wrappers add nothing to the table's (d).
            stage_port = free_port()
            with tempfile.TemporaryDirectory() as folder:
                stage_log = Path(folder) / "stages.jsonl"
                staged = [*gateway[:-1], str(stage_port), "--stage-log", str(stage_log)]
                with run_process(staged, f"http://127.0.0.1:{stage_port}/healthz", env) as stage_pid:
                    wait_until_idle(stage_pid)
                    asyncio.run(run_stage_split(base_url, f"http://127.0.0.1:{stage_port}/v1", stage_log, args.runs))


if __name__ == "__main__":
    main()
