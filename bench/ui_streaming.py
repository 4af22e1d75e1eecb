"""UI streaming: what the Gradio chat adds on top of the model, alone and under load.

    .venv/bin/python bench/ui_streaming.py [--requests 20] [--users 50]

The whole app (app.build_app with one scripted backend) runs in its own
process under uvicorn; the clients are gradio_client users in this process,
calling the Chat tab's /chat endpoint. One run prints one table:

    (a) time to first token seen by a gradio_client user minus the backend's
        own (the "first token" figure the server measured around the router
        and wrote into the stats line), median over --requests requests;
    (b) --users users submitting at the same moment, each streaming 300
        tokens: how many see their first token within 1 s, median and p95
        time to first token, errors;
    (c) server CPU seconds (of the server process, from psutil) to stream a
        500-token reply into an empty chat and into a chat with 200 earlier
        messages, median of 3. The anchor is the same app with pacing off
        (stream_interval_ms = 0: one UI update per token).

Goals: (a) < 30 ms; (b) all users start within 1 s, no errors; (c) long chat
< 2x empty.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
from gradio_client import Client

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODEL = "scripted-echo"
FIRST_TOKEN = re.compile(r"first token (\d+) ms")


def bench_config(stream_interval_ms: int, chunk_delay: float) -> dict[str, Any]:
    words = " ".join(f"w{i}" for i in range(500))
    return {
        "backends": [
            {
                "name": "scripted",
                "kind": "scripted",
                "models": [{"name": MODEL}],
                "chunk_delay": chunk_delay,
                "replies": [
                    {"match": "^short", "text": "A short reply of a few tokens."},
                    {"match": "^three hundred", "text": " ".join(words.split()[:300])},
                    {"match": "^five hundred", "text": words},
                ],
            }
        ],
        "ui": {"stream_interval_ms": stream_interval_ms, "concurrency_limit": 128},
        "resilience": {"cache": {"enabled": False}},
    }


def serve(config_json: str, port: int) -> None:
    """Child process: serve the app built from the config on 127.0.0.1:port."""
    import uvicorn

    from app import build_app
    from backends.registry import BackendContext
    from config import parse_config

    config = parse_config(json.loads(config_json), source="bench config", env={})
    app = build_app(config, context=BackendContext(env={}))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def serve_anchor(port: int) -> None:
    """Child process: a bare Gradio app with the same /chat signature and pacing, and no model layer."""
    import asyncio

    import gradio as gr
    import uvicorn
    from fastapi import FastAPI

    async def chat(message: dict[str, Any], history: list[Any], model: str, system: str, temperature: float, top_p: float, max_tokens: float) -> Any:
        text = str(message.get("text") or "")
        count = 7
        for prefix, length in (("three hundred", 300), ("five hundred", 500)):
            if text.startswith(prefix):
                count = length
        history = [*history, {"role": "user", "content": [{"type": "text", "text": text}]}]
        reply = ""
        last = 0.0
        loop = asyncio.get_running_loop()
        for index in range(count):
            reply += f"w{index} "
            if loop.time() - last >= 0.06 or index == 0:
                last = loop.time()
                yield history + [{"role": "assistant", "content": [{"type": "text", "text": reply}]}], {"text": "", "files": []}
            await asyncio.sleep(0.01)
        yield history + [{"role": "assistant", "content": [{"type": "text", "text": reply.strip()}]}], {"text": "", "files": []}

    with gr.Blocks() as blocks:
        chatbot = gr.Chatbot()
        textbox = gr.MultimodalTextbox()
        controls = [gr.Textbox(), gr.Textbox(), gr.Number(), gr.Number(), gr.Number()]
        textbox.submit(chat, [textbox, chatbot, *controls], [chatbot, textbox], api_name="chat")
    blocks.queue(default_concurrency_limit=128)
    app = gr.mount_gradio_app(FastAPI(), blocks, path="/")
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server_process(config: dict[str, Any] | None) -> Iterator[tuple[str, psutil.Process]]:
    """Run the Parley app built from `config` (or the bare Gradio anchor when None) in a child process."""
    port = free_port()
    mode = ["--serve", json.dumps(config)] if config is not None else ["--serve-anchor"]
    args = [sys.executable, str(Path(__file__).resolve()), *mode, "--port", str(port)]
    child = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/config", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if child.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the app did not start on {url}")
            time.sleep(0.2)
        process = psutil.Process(child.pid)
        wait_until_idle(process)
        yield url, process
    finally:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()


def wait_until_idle(process: psutil.Process, *, limit: float = 90.0) -> None:
    """Wait until the server uses under 10% of a core over one second (Parley loads Whisper in the background at start)."""
    deadline = time.monotonic() + limit
    process.cpu_percent(None)
    while time.monotonic() < deadline:
        if process.cpu_percent(1.0) < 10:
            return
    print(f"warning: the server was still busy {limit:.0f} s after start", file=sys.stderr)


def answer(history: list[dict[str, Any]]) -> str:
    for message in reversed(history):
        if message["role"] == "assistant" and not (message.get("metadata") or {}).get("title"):
            return str(message["content"][0]["text"])
    return ""


def status_title(history: list[dict[str, Any]]) -> str:
    return str((history[-1].get("metadata") or {}).get("title") or "")


def stream_once(client: Client, text: str, history: list[Any] | None = None) -> tuple[float | None, list[dict[str, Any]]]:
    """Send one message; return seconds to the first token seen by the client and the final history."""
    started = time.perf_counter()
    first: float | None = None
    final: list[dict[str, Any]] = []
    job = client.submit({"text": text, "files": []}, history or [], MODEL, "", 0.7, 1.0, 1024, api_name="/chat")
    for history_now, _ in job:
        if first is None and answer(history_now):
            first = time.perf_counter() - started
        final = history_now
    return first, final


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def measure_overhead(url: str, requests: int, *, anchor: bool = False) -> dict[str, float]:
    """Median client first token, and its excess over the server's own figure (the anchor has none: 0)."""
    client = Client(url + "/", verbose=False)
    stream_once(client, "short warm-up")
    overheads: list[float] = []
    client_ttfts: list[float] = []
    for index in range(requests):
        seen, history = stream_once(client, f"short reply please {index}")
        match = FIRST_TOKEN.search(status_title(history))
        if seen is None or (match is None and not anchor):
            raise RuntimeError(f"no first token in {status_title(history)!r}")
        client_ttfts.append(seen * 1000)
        overheads.append(seen * 1000 - (int(match.group(1)) if match else 0))
    return {"overhead_ms": statistics.median(overheads), "client_ttft_ms": statistics.median(client_ttfts)}


def measure_concurrency(url: str, users: int) -> dict[str, float]:
    """Submit one 300-token chat per user at once and watch all jobs from one thread.

    Iterating 50 jobs in 50 threads would busy-poll (gradio_client's job
    iterator sleeps 1 ms per check) and take the CPU the server needs, so
    one loop reads each job's outputs every 5 ms instead.
    """
    clients = [Client(url + "/", verbose=False) for _ in range(users)]
    jobs: list[Any] = []
    started: list[float] = []
    for number, client in enumerate(clients):
        started.append(time.perf_counter())
        jobs.append(client.submit({"text": f"three hundred tokens for user {number}", "files": []}, [], MODEL, "", 0.7, 1.0, 1024, api_name="/chat"))

    first_tokens: dict[int, float] = {}
    deadline = time.perf_counter() + 300
    while time.perf_counter() < deadline and not all(job.done() for job in jobs):
        now = time.perf_counter()
        for number, job in enumerate(jobs):
            if number in first_tokens:
                continue
            outputs = job.outputs()
            if outputs and answer(outputs[-1][0]):
                first_tokens[number] = now - started[number]
        time.sleep(0.005)

    errors: list[str] = []
    for number, job in enumerate(jobs):
        try:
            history, _ = job.result(timeout=10)
            if len(answer(history).split()) != 300:
                raise RuntimeError(f"user {number}: incomplete reply")
        except Exception as exc:  # noqa: BLE001 - every failure is counted and shown
            errors.append(f"{type(exc).__name__}: {exc}")
    for error in errors[:3]:
        print("error:", error, file=sys.stderr)

    values = list(first_tokens.values())
    return {
        "started_within_1s": sum(1 for value in values if value <= 1.0),
        "median_ttft_ms": statistics.median(values) * 1000 if values else float("nan"),
        "p95_ttft_ms": percentile(values, 0.95) * 1000 if values else float("nan"),
        "errors": len(errors),
    }


def long_history(messages: int) -> list[dict[str, Any]]:
    history: list[dict[str, Any]] = []
    for index in range(messages // 2):
        history.append({"role": "user", "content": [{"type": "text", "text": f"Question {index}: " + "tell me more " * 10}]})
        history.append({"role": "assistant", "content": [{"type": "text", "text": f"Answer {index}: " + "here is **more** text " * 15}]})
    return history


def measure_cpu(url: str, process: psutil.Process) -> dict[str, float]:
    client = Client(url + "/", verbose=False)
    stream_once(client, "short warm-up")
    results: dict[str, float] = {}
    for label, history in (("empty", []), ("long", long_history(200))):
        samples: list[float] = []
        for _ in range(3):
            before = process.cpu_times()
            _, final = stream_once(client, "five hundred tokens", history)
            after = process.cpu_times()
            if len(answer(final).split()) != 500:
                raise RuntimeError(f"{label}: incomplete reply")
            samples.append((after.user + after.system) - (before.user + before.system))
        results[label] = statistics.median(samples)
    return results



def verdict(has_goal: bool, met: bool) -> str:
    """Return the goal column of a table row: empty for an anchor row."""
    if not has_goal:
        return ""
    return "met" if met else "NOT met"

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20, help="Requests for the first-token overhead (a).")
    parser.add_argument("--users", type=int, default=50, help="Concurrent users for (b).")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--serve-anchor", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    if args.serve_anchor:
        serve_anchor(args.port)
        return

    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}")
    rows: list[tuple[str, str, str, str]] = []

    # (a) and (b): paced app, 10 ms between tokens (300 tokens take about 3 s),
    # each beside the bare Gradio anchor measured the same way.
    for label, config in (("Parley", bench_config(stream_interval_ms=60, chunk_delay=0.01)), ("anchor: bare Gradio", None)):
        anchor = config is None
        with server_process(config) as (url, _):
            overhead = measure_overhead(url, args.requests, anchor=anchor)
            load = measure_concurrency(url, args.users)
        rows.append(
            (
                f"(a) first-token overhead, median of {args.requests}, {label}",
                f"{overhead['overhead_ms']:.1f} ms (client sees {overhead['client_ttft_ms']:.1f} ms)",
                "reference" if anchor else "< 30 ms",
                verdict(not anchor, overhead["overhead_ms"] < 30),
            )
        )
        met = load["started_within_1s"] == args.users and load["errors"] == 0
        rows.append(
            (
                f"(b) {args.users} users x 300 tokens, {label}",
                f"{load['started_within_1s']:.0f}/{args.users} start within 1 s; first token median {load['median_ttft_ms']:.0f} ms, "
                f"p95 {load['p95_ttft_ms']:.0f} ms; {load['errors']:.0f} errors",
                "reference" if anchor else f"{args.users}/{args.users} within 1 s, 0 errors",
                verdict(not anchor, met),
            )
        )

    # (c): 500 tokens at 5 ms each, paced (Parley) and one update per token (anchor).
    for label, interval in (("paced, 60 ms", 60), ("anchor: unpaced", 0)):
        with server_process(bench_config(stream_interval_ms=interval, chunk_delay=0.005)) as (url, process):
            cpu = measure_cpu(url, process)
        ratio = cpu["long"] / cpu["empty"] if cpu["empty"] else float("nan")
        rows.append(
            (
                f"(c) server CPU, 500 tokens, {label}",
                f"empty chat {cpu['empty']:.2f} s, 200 earlier messages {cpu['long']:.2f} s ({ratio:.2f}x)",
                "long < 2x empty" if interval else "reference",
                verdict(bool(interval), ratio < 2),
            )
        )

    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    print()
    print("| measure | result | goal | |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
