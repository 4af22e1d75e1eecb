"""Batch throughput and chat responsiveness while a batch runs.

    .venv/bin/python bench/batch.py [--prompts 1000] [--settings 3] [--concurrency 16] [--latency 0.05]

A fake OpenAI-compatible server (tests/fakes/openai_server.py) runs in its
own process and replies to every request after `--latency` seconds with a
reply of 8 chunks. The batch (prompts x settings runs) goes through a
JobManager and the Router that backends.pipeline.build_router builds as the
app does (cache bypassed, retry, fallback, circuit breaker, balancer).

Figures:
    wall time      submit to the job's end, against the ideal
                   (runs x latency / concurrency) and against an anchor:
                   the same requests sent by httpx alone right after the job
    CPU            this process's CPU time and the fake server process's
                   CPU time during the job, per run, beside the anchor's
                   client CPU per run; with the load average, they show
                   whether the machine had the cores the ideal needs
    peak RSS       the process's VmHWM after the job, and its growth over
                   the RSS before the job
    chat start     time to the first token of a chat request sent every
                   0.25 s through the same Router while the batch runs,
                   beside the same requests with no batch running (the anchor);
                   "local" is a scripted model in this process (pure
                   scheduling delay), "remote" is the fake server (latency included)

With `--capacity`, it first sends streamed requests with httpx alone to a
fake server with no latency, then to one with `--latency`, at concurrency
1 to 32, and prints the time per request: how many requests per second
this machine's client and server can carry at all, with no Parley code.

With `--ui`, the whole app (`python app.py`) runs in its own process and this
process drives it through gradio_client as a browser would: the batch starts
through the Batch tab's /start_batch endpoint and each chat goes through the
Chat tab's /chat endpoint, timed to the first streamed output that carries
reply text.
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
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backends.pipeline import build_router  # noqa: E402
from backends.registry import BackendContext  # noqa: E402
from backends.router import Router  # noqa: E402
from backends.types import SamplingParams  # noqa: E402
from config import parse_config  # noqa: E402
from workbench.batch import BatchSettings, JobManager, base_spec, make_plan  # noqa: E402
from workbench.inputs import PromptRow  # noqa: E402
from workbench.runner import RunSpec, run_once  # noqa: E402

SERVER_CODE = """
import asyncio, sys
from tests.fakes.openai_server import Behaviour, FakeOpenAIServer

async def serve():
    behaviour = Behaviour(chunks=tuple(f"tok{i} " for i in range(8)), hang_before_first_byte=float(sys.argv[2]))
    server = await FakeOpenAIServer(default=behaviour, port=int(sys.argv[1])).start()
    await asyncio.Event().wait()

asyncio.run(serve())
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def fake_server(latency: float) -> Iterator[tuple[str, int]]:
    """Run the fake server in its own process; yields its base URL and process id."""
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, "-c", SERVER_CODE, str(port), str(latency)], cwd=ROOT, stdout=subprocess.DEVNULL
    )
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
        yield base_url, child.pid
    finally:
        child.terminate()
        child.wait(timeout=10)


def rss_kb(field: str) -> int:
    """Read VmRSS or VmHWM of this process from /proc, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def process_cpu_seconds(pid: int) -> float:
    """Read the user plus system CPU time of process `pid` from /proc/PID/stat."""
    # The command name (field 2) may contain spaces, so split after its closing parenthesis.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    user_ticks, system_ticks = int(fields[11]), int(fields[12])
    return (user_ticks + system_ticks) / os.sysconf("SC_CLK_TCK")


def build(base_url: str) -> Router:
    raw = {
        "backends": [
            {"name": "remote", "kind": "openai", "base_url": base_url, "models": [{"name": "remote"}]},
            {"name": "local", "kind": "scripted", "models": [{"name": "local"}], "replies": [{"text": "hi there"}]},
        ]
    }
    return build_router(parse_config(raw, source="bench/batch.py", env={}), BackendContext())


async def chat_starts(router: Router, model: str, stop: asyncio.Event, every: float, limit: int) -> list[float]:
    """Send a chat request every `every` seconds until `stop` is set (or `limit` requests); return TTFTs."""
    starts: list[float] = []
    for index in range(limit):
        if stop.is_set():
            break
        result = await run_once(router, RunSpec(model), f"chat {model} {index}", bypass_cache=True)
        if result.ttft_s is not None:
            starts.append(result.ttft_s)
        await asyncio.sleep(every)
    return starts


async def plain_httpx(base_url: str, total: int, concurrency: int) -> tuple[float, float]:
    """Send `total` streamed requests with httpx alone, `concurrency` at a time; return wall and CPU seconds.

    This anchor is what a bare Python client achieves on the same machine at the same moment.
    """
    slots = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=concurrency * 2)

    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30.0) as client:
        async def one(index: int) -> None:
            body = {"model": "remote", "stream": True, "messages": [{"role": "user", "content": f"prompt {index}"}]}
            async with slots, client.stream("POST", "/chat/completions", json=body) as response:
                async for _ in response.aiter_lines():
                    pass

        started = time.perf_counter()
        cpu_started = time.process_time()
        await asyncio.gather(*(one(index) for index in range(total)))
        return time.perf_counter() - started, time.process_time() - cpu_started


def describe(values: list[float]) -> str:
    if not values:
        return "no samples"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"median {statistics.median(ordered) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms (n={len(ordered)})"


async def measure(base_url: str, server_pid: int, args: argparse.Namespace) -> None:
    router = build(base_url)
    settings = BatchSettings(concurrency=args.concurrency, max_concurrency=args.concurrency, max_runs=10**6)
    temperatures = tuple(round(0.2 + 0.3 * index, 2) for index in range(args.settings))
    rows = tuple(PromptRow(str(index), f"prompt number {index}") for index in range(args.prompts))
    plan = make_plan(rows, ["remote"], temperatures, (None,), base_spec(SamplingParams(max_tokens=64)), settings)

    # Anchor: chat starts with no batch running.
    idle = asyncio.Event()
    idle_tasks = [asyncio.create_task(chat_starts(router, model, idle, args.chat_every, 12)) for model in ("local", "remote")]
    anchor_local, anchor_remote = await asyncio.gather(*idle_tasks)

    manager = JobManager(router, settings)
    rss_before = rss_kb("VmRSS")
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    cpu_started = time.process_time()
    server_cpu_started = process_cpu_seconds(server_pid)
    job = manager.submit(plan)
    done = asyncio.Event()
    chat_tasks = [asyncio.create_task(chat_starts(router, model, done, args.chat_every, 10**6)) for model in ("local", "remote")]
    await manager.wait(job.id)
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    server_cpu = process_cpu_seconds(server_pid) - server_cpu_started
    load_after = os.getloadavg()[0]
    done.set()
    busy_local, busy_remote = await asyncio.gather(*chat_tasks)
    peak = rss_kb("VmHWM")
    await router.aclose()
    anchor_wall, anchor_cpu = await plain_httpx(base_url, plan.total, args.concurrency)

    ideal = plan.total * args.latency / args.concurrency
    latencies = [row.latency_s for row in job.rows() if row.latency_s is not None]
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average (1 min) {load_before:.1f} at the job's "
          f"start, {load_after:.1f} at its end, Python {platform.python_version()}")
    print(f"runs: {plan.total} ({args.prompts} prompts x {args.settings} settings), concurrency {args.concurrency}, "
          f"server latency {args.latency * 1000:.0f} ms")
    print(f"job: {job.state}, {job.done} done, {job.failed} failed")
    print(f"wall time: {wall:.2f} s, ideal {ideal:.2f} s, {(wall / ideal - 1) * 100:+.1f}% over the ideal")
    print(f"anchor, httpx alone, same runs and concurrency: {anchor_wall:.2f} s, "
          f"{(anchor_wall / ideal - 1) * 100:+.1f}% over the ideal; the batch took {wall / anchor_wall:.2f}x the anchor")
    print(f"per-run latency: {describe(latencies)}")
    print(f"client CPU time during the job: {cpu:.2f} s ({cpu / plan.total * 1000:.2f} ms per run); "
          f"anchor client: {anchor_cpu / plan.total * 1000:.2f} ms per run")
    print(f"fake server CPU time during the job: {server_cpu:.2f} s ({server_cpu / plan.total * 1000:.2f} ms per run)")
    print(f"CPU the ideal needs: {(cpu + server_cpu) / ideal:.2f} cores busy for {ideal:.2f} s, "
          f"on {os.cpu_count()} cores shared by a load of {load_before:.1f}")
    print(f"peak RSS: {peak / 1024:.1f} MiB (RSS before the job {rss_before / 1024:.1f} MiB, "
          f"growth {(peak - rss_before) / 1024:.1f} MiB)")
    print(f"chat start, local model, idle:      {describe(anchor_local)}")
    print(f"chat start, local model, batch on:  {describe(busy_local)}")
    print(f"chat start, remote model, idle:     {describe(anchor_remote)}")
    print(f"chat start, remote model, batch on: {describe(busy_remote)}")


async def capacity(base_url: str, latency: float) -> None:
    """Print httpx's time and CPU per streamed request at rising concurrency against one server."""
    # A warm-up, so the first row does not carry imports and the server's first connections.
    await plain_httpx(base_url, 40, 4)
    for total, concurrency in ((40, 1), (320, 4), (640, 8), (960, 16), (960, 32)):
        wall, cpu = await plain_httpx(base_url, total, concurrency)
        print(f"httpx alone, server latency {latency * 1000:.0f} ms, concurrency {concurrency}: "
              f"{wall / total * concurrency * 1000:.1f} ms per request, {total / wall:.0f} requests/s, "
              f"client CPU {cpu / total * 1000:.2f} ms per request, load average {os.getloadavg()[0]:.1f}")


def chat_reply_text(history: list[dict[str, Any]]) -> str:
    """Return the reply text of the last assistant message that is not a status block."""
    for message in reversed(history):
        if message.get("role") == "assistant" and not (message.get("metadata") or {}).get("title"):
            content = message.get("content") or []
            return str(content[0].get("text", "")) if content and isinstance(content[0], dict) else ""
    return ""


def ui_chat_start(client: Any, model: str, index: int) -> float | None:
    """Send one chat through the Chat tab's endpoint; return seconds to the first output with reply text."""
    started = time.perf_counter()
    job = client.submit({"text": f"chat {model} {index}", "files": []}, [], model, "", 0.7, 1.0, 64, api_name="/chat")
    for output in job:
        if chat_reply_text(output[0]):
            return time.perf_counter() - started
    return None


def measure_ui(base_url: str, args: argparse.Namespace, work: Path) -> None:
    """Run the app in its own process and measure the batch and chat through gradio_client."""
    from gradio_client import Client, handle_file

    config = work / "parley.toml"
    config.write_text(
        f"""
[[backends]]
name = "remote"
kind = "openai"
base_url = "{base_url}"
[[backends.models]]
name = "remote"

[[backends]]
name = "local"
kind = "scripted"
[[backends.models]]
name = "local"

[presets]
data_dir = "{work / 'data'}"

[batch]
concurrency = {args.concurrency}
max_concurrency = {args.concurrency}
max_runs = 1000000
""",
        encoding="utf-8",
    )
    prompts = work / "prompts.csv"
    prompts.write_text("prompt\n" + "".join(f"prompt number {index}\n" for index in range(args.prompts)), encoding="utf-8")
    temperatures = ", ".join(f"{0.2 + 0.3 * index:.1f}" for index in range(args.settings))

    port = free_port()
    app = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--config", str(config)], cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "config", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or app.poll() is not None:
                raise RuntimeError("the app did not start")
            time.sleep(0.5)
        client = Client(url, verbose=False)

        idle = {model: [ui_chat_start(client, model, index) for index in range(8)] for model in ("local", "remote")}

        started = time.perf_counter()
        job_id, *_ = client.predict(handle_file(str(prompts)), ["remote"], "custom", temperatures, "", False,
                                    api_name="/start_batch")
        busy: dict[str, list[float | None]] = {"local": [], "remote": []}
        index = 0
        while True:
            for model in ("local", "remote"):
                busy[model].append(ui_chat_start(client, model, index))
            index += 1
            _, progress, *_ = client.predict(job_id, api_name="/batch_status")
            if 'data-state="running"' not in progress:
                break
            time.sleep(args.chat_every)
        wall = time.perf_counter() - started
        client.close()
    finally:
        app.terminate()
        app.wait(timeout=30)

    runs = args.prompts * args.settings
    ideal = runs * args.latency / args.concurrency
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
          f"Python {platform.python_version()}")
    print(f"through the UI (gradio_client), app in its own process: {runs} runs, concurrency {args.concurrency}")
    print(f"batch wall time, seen by polling /batch_status: {wall:.2f} s, ideal {ideal:.2f} s, "
          f"{(wall / ideal - 1) * 100:+.1f}% over the ideal")
    for model in ("local", "remote"):
        print(f"chat start via /chat, {model} model, idle:     {describe([v for v in idle[model] if v is not None])}")
        print(f"chat start via /chat, {model} model, batch on: {describe([v for v in busy[model] if v is not None])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=1000, help="Prompts in the batch.")
    parser.add_argument("--settings", type=int, default=3, help="Temperature values in the grid.")
    parser.add_argument("--concurrency", type=int, default=16, help="Runs in flight at once.")
    parser.add_argument("--latency", type=float, default=0.05, help="Seconds the server waits before it sends the reply.")
    parser.add_argument("--chat-every", type=float, default=0.25, help="Seconds between chat requests during the batch.")
    parser.add_argument("--capacity", action="store_true", help="First measure httpx alone at concurrency 1 to 32.")
    parser.add_argument("--ui", action="store_true", help="Run the app in its own process and measure through gradio_client.")
    args = parser.parse_args()

    if args.capacity:
        for latency in (0.0, args.latency):
            with fake_server(latency) as (base_url, _):
                asyncio.run(capacity(base_url, latency))

    with fake_server(args.latency) as (base_url, server_pid):
        if args.ui:
            with tempfile.TemporaryDirectory(prefix="parley-bench-") as work:
                measure_ui(base_url, args, Path(work))
        else:
            asyncio.run(measure(base_url, server_pid, args))


if __name__ == "__main__":
    main()
