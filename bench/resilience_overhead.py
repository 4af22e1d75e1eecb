"""Resilience overhead: what the layer stack adds to a model call, beside LiteLLM's Router.

    .venv/bin/python bench/resilience_overhead.py [--requests 300] [--runs 15] [--chunks 2000]

Two local fake OpenAI-compatible servers (tests/fakes/openai_server.py, each
in its own process) serve every client: one streams a short reply of 8
chunks, for the cost per request, and one streams `--chunks` chunks, for the
cost per chunk. The clients, all in this process:

    bare backend   Parley's openai backend alone (backends/openai_compat.py)
    layer stack    the same backend behind every layer, built by
                   backends.pipeline.build_router as the app builds it:
                   metrics, memory cache (a miss: every prompt differs),
                   fallback chain, retry, balancer, circuit breaker
    cache hit      the layer stack replaying a cached reply
    openai SDK     the official SDK alone, which LiteLLM calls underneath
    LiteLLM        litellm.Router with num_retries=3 and the same fallback

Overheads compare medians: the layer stack against the bare backend, LiteLLM
against the openai SDK. The Parley clients and the SDK take turns call by
call; LiteLLM runs after them. Logging stays at WARNING, so the layer stack's INFO
line per call is formatted but not written.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# LiteLLM would otherwise download its model price list at import; the bench talks to 127.0.0.1 only.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

from backends.base import Backend  # noqa: E402
from backends.layers.settings import ResilienceSettings  # noqa: E402
from backends.layers.stack import open_services, wrap_routes  # noqa: E402
from backends.openai_compat import Settings, create  # noqa: E402
from backends.pipeline import build_router  # noqa: E402
from backends.registry import BackendContext  # noqa: E402
from backends.settings import BackendSettings, ModelSettings  # noqa: E402
from backends.types import ChatRequest, Finished, Message, ModelInfo, TextDelta  # noqa: E402
from config import parse_config  # noqa: E402

UPSTREAM = "fake-model"
SHORT_CHUNKS = 8

# One call: (seconds to the first content chunk, content chunks, seconds in total,
# CPU seconds this process spent on it).
Measurement = tuple[float, int, float, float]
# A client makes one call for a prompt.
Client = Callable[[str], Awaitable[Measurement]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def fake_server(chunks: int) -> Iterator[str]:
    """Run the fake server in its own process; yields its base URL."""
    port = free_port()
    args = [sys.executable, "-m", "tests.fakes.openai_server", "--port", str(port), "--chunks", str(chunks)]
    child = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base_url}/models", timeout=1.0)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the fake server on port {port} did not start") from None
                time.sleep(0.1)
        yield base_url
    finally:
        child.terminate()
        child.wait(timeout=10)


def messages(prompt: str) -> tuple[Message, ...]:
    return (Message.text("user", prompt),)


async def read_parley(stream: Any, start: float, cpu_start: float) -> Measurement:
    first = 0.0
    count = 0
    async for event in stream:
        if type(event) is TextDelta:
            count += 1
            if count == 1:
                first = time.perf_counter() - start
    return first, count, time.perf_counter() - start, time.process_time() - cpu_start


async def read_openai_chunks(stream: Any, start: float, cpu_start: float) -> Measurement:
    """Read a stream of OpenAI chunk objects, as the SDK and LiteLLM return them."""
    first = 0.0
    count = 0
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            count += 1
            if count == 1:
                first = time.perf_counter() - start
    return first, count, time.perf_counter() - start, time.process_time() - cpu_start


def bare_backend(base_url: str) -> Client:
    backend = create(
        Settings.model_validate({"name": "remote", "kind": "openai", "base_url": base_url, "models": [{"name": UPSTREAM}]}),
        BackendContext(),
    )

    async def run(prompt: str) -> Measurement:
        start, cpu_start = time.perf_counter(), time.process_time()
        return await read_parley(backend.stream(ChatRequest(messages=messages(prompt), model=UPSTREAM)), start, cpu_start)

    return run


def layer_stack(base_url: str) -> Client:
    raw = {
        "backends": [
            {
                "name": "remote",
                "kind": "openai",
                "base_url": base_url,
                "models": [{"name": "deepseek-chat", "upstream": UPSTREAM, "fallback": ["smollm2"]}],
            },
            {"name": "local", "kind": "openai", "base_url": base_url, "models": [{"name": "smollm2", "upstream": UPSTREAM}]},
        ],
    }
    router = build_router(parse_config(raw, source="bench/resilience_overhead.py", env={}), BackendContext())

    async def run(prompt: str) -> Measurement:
        start, cpu_start = time.perf_counter(), time.process_time()
        return await read_parley(
            router.stream(ChatRequest(messages=messages(prompt), model="deepseek-chat")), start, cpu_start
        )

    return run


def openai_sdk(base_url: str) -> Client:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key="bench-key", max_retries=0)

    async def run(prompt: str) -> Measurement:
        start, cpu_start = time.perf_counter(), time.process_time()
        stream = await client.chat.completions.create(
            model=UPSTREAM, messages=[{"role": "user", "content": prompt}], stream=True
        )
        return await read_openai_chunks(stream, start, cpu_start)

    return run


def litellm_router(base_url: str) -> Client:
    import litellm

    litellm.telemetry = False
    params = {"model": f"openai/{UPSTREAM}", "api_base": base_url, "api_key": "bench-key"}
    router = litellm.Router(
        model_list=[
            {"model_name": "deepseek-chat", "litellm_params": dict(params)},
            {"model_name": "smollm2", "litellm_params": dict(params)},
        ],
        num_retries=3,
        fallbacks=[{"deepseek-chat": ["smollm2"]}],
    )

    async def run(prompt: str) -> Measurement:
        start, cpu_start = time.perf_counter(), time.process_time()
        stream = await router.acompletion(
            model="deepseek-chat", messages=[{"role": "user", "content": prompt}], stream=True
        )
        return await read_openai_chunks(stream, start, cpu_start)

    return run


class InstantBackend(Backend):
    """Yields prepared chunks without I/O, which isolates the layers' own cost per chunk."""

    name = "instant"

    def __init__(self, chunks: int) -> None:
        self._chunk = TextDelta("tok ")
        self._chunks = chunks

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(name="instant", backend=self.name, upstream="instant")]

    async def stream(self, request: ChatRequest) -> Any:
        for _ in range(self._chunks):
            yield self._chunk
        yield Finished(reason="stop", backend=self.name, model=request.model)


def stacked(source: InstantBackend) -> Backend:
    """Return the route of the model "instant" over `source`, with the default layers and a fallback."""
    settings = BackendSettings(
        name="instant", kind="instant", models=[ModelSettings(name="instant", fallback=["spare"]), ModelSettings(name="spare")]
    )
    routes, _ = wrap_routes([settings], {"instant": source}, open_services(ResilienceSettings()), lambda _: source)
    return routes["instant"]


async def cpu_seconds(stream: Any) -> float:
    start = time.process_time()
    async for _ in stream:
        pass
    return time.process_time() - start


async def layers_alone(chunks: int, replies: int) -> tuple[float, float]:
    """Return the median CPU microseconds the layers add per chunk and per short reply, without I/O."""
    long_source, short_source = InstantBackend(chunks), InstantBackend(SHORT_CHUNKS)
    long_route, short_route = stacked(long_source), stacked(short_source)

    per_chunk: list[float] = []
    per_reply: list[float] = []
    for index in range(replies):
        # A new prompt each time, so every stacked call is a cache miss.
        request = ChatRequest(messages=messages(f"instant {index}"), model="instant")
        bare = await cpu_seconds(long_source.stream(request))
        layered = await cpu_seconds(long_route.stream(request))
        per_chunk.append((layered - bare) / chunks * 1e6)

        bare = await cpu_seconds(short_source.stream(request))
        layered = await cpu_seconds(short_route.stream(request))
        per_reply.append((layered - bare) * 1e6)
    return statistics.median(per_chunk), statistics.median(per_reply)


async def interleaved(clients: dict[str, Client], calls: int, expected: int, tag: str) -> dict[str, list[Measurement]]:
    """Call every client `calls` times, in rounds of one call each, every call with a new prompt."""
    results: dict[str, list[Measurement]] = {label: [] for label in clients}
    for label, client in clients.items():
        await client(f"warm-up {tag} {label}")
    labels = list(clients)
    for index in range(calls):
        # Rotate who goes first, so no client always follows the same one.
        shift = index % len(labels)
        for label in labels[shift:] + labels[:shift]:
            measurement = await clients[label](f"{tag} prompt {index}")
            if measurement[1] != expected:
                raise RuntimeError(f"{label}: read {measurement[1]} content chunks, expected {expected}")
            results[label].append(measurement)
    return results


async def cache_hit_first_chunk(stack: Client, calls: int) -> float:
    """Return the median seconds to the first replayed chunk of a cached reply."""
    await stack("the cached prompt")
    firsts = [(await stack("the cached prompt"))[0] for _ in range(calls)]
    return statistics.median(firsts)


def median_wall(measurements: list[Measurement]) -> float:
    return statistics.median(measurement[2] for measurement in measurements)


def median_cpu(measurements: list[Measurement]) -> float:
    return statistics.median(measurement[3] for measurement in measurements)


async def bench(args: argparse.Namespace) -> None:
    with fake_server(SHORT_CHUNKS) as short_url, fake_server(args.chunks) as long_url:
        # LiteLLM runs last and alone: it leaves logging tasks behind after each call,
        # which would otherwise run inside the next client's measurement.
        short = await interleaved(
            {"bare backend": bare_backend(short_url), "layer stack": layer_stack(short_url), "openai SDK": openai_sdk(short_url)},
            args.requests,
            SHORT_CHUNKS,
            "short",
        )
        long = await interleaved(
            {"bare backend": bare_backend(long_url), "layer stack": layer_stack(long_url), "openai SDK": openai_sdk(long_url)},
            args.runs,
            args.chunks,
            "long",
        )
        hit = await cache_hit_first_chunk(layer_stack(short_url), args.requests)
        alone_chunk_us, alone_request_us = await layers_alone(args.chunks, args.runs * 4)
        short.update(await interleaved({"LiteLLM": litellm_router(short_url)}, args.requests, SHORT_CHUNKS, "short"))
        long.update(await interleaved({"LiteLLM": litellm_router(long_url)}, args.runs, args.chunks, "long"))

    print(
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
        f"{args.requests} short requests ({SHORT_CHUNKS} chunks) and {args.runs} long replies "
        f"({args.chunks} chunks) per client; medians; CPU = this process's CPU time"
    )
    print()
    print(
        "| client | short request wall (ms) | short request CPU (ms) | long reply wall (ms) | long reply CPU (ms) "
        "| added per request, CPU (ms) | added per chunk, CPU |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    baselines = {"layer stack": "bare backend", "LiteLLM": "openai SDK"}
    added: dict[str, tuple[float, float]] = {}
    for label in ("bare backend", "layer stack", "openai SDK", "LiteLLM"):
        row = [
            f"{median_wall(short[label]) * 1000:.2f}",
            f"{median_cpu(short[label]) * 1000:.2f}",
            f"{median_wall(long[label]) * 1000:.1f}",
            f"{median_cpu(long[label]) * 1000:.1f}",
        ]
        base = baselines.get(label)
        if base is None:
            row += ["—", "—"]
        else:
            request_ms = (median_cpu(short[label]) - median_cpu(short[base])) * 1000
            chunk_share = (median_cpu(long[label]) - median_cpu(long[base])) / median_cpu(long[base]) * 100
            added[label] = (request_ms, chunk_share)
            row += [f"{request_ms:+.2f} vs {base}", f"{chunk_share:+.1f}% vs {base}"]
        print(f"| {label} | " + " | ".join(row) + " |")
    print(f"| layer stack, cache hit | first replayed chunk after {hit * 1000:.3f} ms (wall) | | | | | |")
    bare_chunk_us = median_cpu(long["bare backend"]) / args.chunks * 1e6
    print(
        f"| layers alone, no I/O | | | | | {alone_request_us / 1000:+.3f} per short reply "
        f"| {alone_chunk_us:+.2f} µs per chunk = {alone_chunk_us / bare_chunk_us * 100:+.1f}% of the bare backend's "
        f"{bare_chunk_us:.1f} µs |"
    )
    print()

    stack_request, stack_chunk = added["layer stack"]
    litellm_request, _ = added["LiteLLM"]
    print(
        f"goals: added per request < 1 ms: {'met' if stack_request < 1 else 'MISSED'}; "
        f"per chunk < 5%: {'met' if stack_chunk < 5 else 'MISSED'}; "
        f"cache hit first chunk < 5 ms: {'met' if hit < 0.005 else 'MISSED'}; "
        f"less than LiteLLM per request: {'met' if stack_request < litellm_request else 'MISSED'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300, help="Short requests per client (default 300).")
    parser.add_argument("--runs", type=int, default=15, help="Long replies per client (default 15).")
    parser.add_argument("--chunks", type=int, default=2000, help="Chunks in a long reply (default 2000).")
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
