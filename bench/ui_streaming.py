"""UI streaming: what the Gradio chat adds on top of the model, alone and under load.

    .venv/bin/python bench/ui_streaming.py [--requests 20] [--users 50] [--profile-b FILE]

The whole app (app.build_app with one scripted backend) runs in its own
process under uvicorn, calling the Chat tab's /chat endpoint. The clients
run in this process and are of two kinds:

- gradio_client users (the issue's goals name them). gradio_client 2.7.2
  hands each job's messages from its stream reader to the caller through a
  thread that checks every 50 ms, and opens a new HTTP client, with a new
  TLS context, for every join and every event stream;
- a browser-style client (bench/queue_protocol.py) that joins the queue and
  reads the event stream as Gradio's JavaScript client does, stamping each
  event as it arrives.

One run prints one table:

    (a) time to first token seen by the client minus the backend's own (the
        "first token" figure the server measured around the router and wrote
        into the stats line), median over --requests requests of one user,
        with the moments of a request: join POST answered, handler entered,
        handler yields the first reply text, the client's reader gets it,
        gradio_client's poller hands it over;
    (b) --users users submitting at the same moment, each streaming 300
        tokens: how many see their first token within 1 s, median and p95
        time to first token, errors, and the server's CPU seconds;
    (c) server CPU seconds (of the server process, from psutil) to stream a
        500-token reply into an empty chat and into a chat with 200 earlier
        messages, median of 3. The anchor is the same app with pacing off
        (stream_interval_ms = 0).

Goals, on the gradio_client rows: (a) < 30 ms; (b) all users start within
1 s, no errors; (c) long chat < 2x empty. The browser-style rows have no goal
of their own; they show what the server and the protocol allow.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import json
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
from gradio_client import Client

# Modules next to this script.
import queue_protocol
from gradio_client_timing import TimedDeques, stamps_of
from processes import free_port, run_process, wait_until_idle

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


class YieldTrace:
    """Server side: when each chat handler started and yielded, by message text, in time.monotonic() seconds."""

    def __init__(self) -> None:
        self.calls: dict[str, dict[str, Any]] = {}
        self.profiler: cProfile.Profile | None = None

    def wrap(self, handler: Any) -> Any:
        """Return `handler` (an async generator function taking the message first) with its yields timed."""

        @functools.wraps(handler)
        async def traced(*args: Any, **kwargs: Any) -> Any:
            message = next(arg for arg in args if isinstance(arg, dict) and "text" in arg)
            record: dict[str, Any] = {"entered": time.monotonic(), "yields": []}
            self.calls[str(message["text"])] = record
            async for update in handler(*args, **kwargs):
                record["yields"].append((time.monotonic(), bool(answer(update[0]))))
                yield update

        return traced

    def install(self, app: Any) -> None:
        """Serve the trace at GET /bench/trace and a profiler at POST /bench/profile, ahead of the UI mounted at "/"."""
        from fastapi.routing import APIRoute

        app.router.routes.insert(0, APIRoute("/bench/trace", lambda: self.calls, methods=["GET"]))
        app.router.routes.insert(0, APIRoute("/bench/profile", self.profile, methods=["POST"]))

    async def profile(self, path: str = "") -> dict[str, str]:
        """Start profiling the event loop's thread in CPU seconds, or with `path` stop and write the pstats file there.

        The handler is async so that it runs on the event loop's thread, which cProfile then follows.
        """
        if not path:
            self.profiler = cProfile.Profile(time.process_time)
            self.profiler.enable()
            return {"profiling": "started"}
        if self.profiler is None:
            return {"profiling": "not started"}
        self.profiler.disable()
        self.profiler.dump_stats(path)
        self.profiler = None
        return {"profiling": f"written to {path}"}


def serve(config_json: str, port: int) -> None:
    """Child process: serve the app built from the config on 127.0.0.1:port, with its chat yields traced."""
    import uvicorn

    from app import build_app
    from backends.registry import BackendContext
    from config import parse_config
    from ui.chat_tab import ChatHandlers

    trace = YieldTrace()
    ChatHandlers.chat = trace.wrap(ChatHandlers.chat)  # type: ignore[method-assign]
    config = parse_config(json.loads(config_json), source="bench config", env={})
    app = build_app(config, context=BackendContext(env={}))
    trace.install(app)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def serve_anchor(port: int) -> None:
    """Child process: a bare Gradio app with the same /chat signature and pacing, no model layer, and the same trace."""
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

    trace = YieldTrace()
    with gr.Blocks() as blocks:
        chatbot = gr.Chatbot()
        textbox = gr.MultimodalTextbox()
        controls = [gr.Textbox(), gr.Textbox(), gr.Number(), gr.Number(), gr.Number()]
        textbox.submit(trace.wrap(chat), [textbox, chatbot, *controls], [chatbot, textbox], api_name="chat")
    blocks.queue(default_concurrency_limit=128)
    app = gr.mount_gradio_app(FastAPI(), blocks, path="/")
    trace.install(app)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


@contextmanager
def server_process(config: dict[str, Any] | None) -> Iterator[tuple[str, psutil.Process]]:
    """Run the Parley app built from `config` (or the bare Gradio anchor when None) in a child process."""
    port = free_port()
    mode = ["--serve", json.dumps(config)] if config is not None else ["--serve-anchor"]
    args = [sys.executable, str(Path(__file__).resolve()), *mode, "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    with run_process(args, url + "/config") as pid:
        wait_until_idle(pid)
        yield url, psutil.Process(pid)


def answer(history: list[dict[str, Any]]) -> str:
    for message in reversed(history):
        if message["role"] == "assistant" and not (message.get("metadata") or {}).get("title"):
            return str(message["content"][0]["text"])
    return ""


def status_title(history: list[dict[str, Any]]) -> str:
    return str((history[-1].get("metadata") or {}).get("title") or "")


def chat_inputs(text: str, history: list[Any] | None = None) -> list[Any]:
    """Build the /chat inputs as JSON: message, history, model, system prompt, temperature, top-p, max tokens."""
    return [{"text": text, "files": []}, history or [], MODEL, "", 0.7, 1.0, 1024]


def stream_once(client: Client, text: str, history: list[Any] | None = None) -> tuple[float | None, list[dict[str, Any]]]:
    """Send one message; return seconds to the first token seen by the client and the final history."""
    started = time.perf_counter()
    first: float | None = None
    final: list[dict[str, Any]] = []
    for history_now, _ in client.submit(*chat_inputs(text, history), api_name="/chat"):
        if first is None and answer(history_now):
            first = time.perf_counter() - started
        final = history_now
    return first, final


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def server_first_token(history: list[dict[str, Any]], *, anchor: bool) -> float:
    """Return the server's own first-token seconds from the stats line (0 for the anchor, which has no model layer)."""
    match = FIRST_TOKEN.search(status_title(history))
    if match is None:
        if anchor:
            return 0.0
        raise RuntimeError(f"no first token in {status_title(history)!r}")
    return int(match.group(1)) / 1000


def server_trace(url: str) -> dict[str, Any]:
    return dict(httpx.get(url + "/bench/trace", timeout=10).json())


def first_text_yield(record: dict[str, Any]) -> float:
    """Return the monotonic time at which the handler first yielded reply text."""
    return float(next(at for at, with_text in record["yields"] if with_text))


def first_text_message(log: list[Any]) -> Any:
    """Return the first queue message of a finished gradio_client job whose chatbot output contains reply text.

    gradio_client replaces each streamed diff in the message with the full
    output when it takes the message, so the logged messages contain full outputs.
    """
    for kind, _, message in log:
        if kind == "append" and isinstance(message, dict) and message.get("msg") == "process_generating" and answer(message["output"]["data"][0]):
            return message
    raise RuntimeError("no queue message with reply text")


def medians_ms(moments: dict[str, list[float]]) -> dict[str, float]:
    return {key: statistics.median(values) * 1000 for key, values in moments.items()}


def measure_overhead(url: str, requests: int, *, anchor: bool = False) -> dict[str, float]:
    """(a) with one gradio_client user: first-token overhead and the moments of a request (medians, ms after submit())."""
    client = Client(url + "/", verbose=False)
    stream_once(client, "short warm-up")

    # Stamp, from the outside, when the join POST returned and when the client's threads handled each message.
    deques = TimedDeques()
    client.pending_messages_per_event = deques
    joined: dict[str, float] = {}
    send_data = client.send_data

    def timed_send_data(*args: Any, **kwargs: Any) -> str:
        event_id = str(send_data(*args, **kwargs))
        joined[event_id] = time.monotonic()
        return event_id

    client.send_data = timed_send_data  # type: ignore[method-assign]

    runs: list[tuple[str, float, float, list[dict[str, Any]]]] = []
    for index in range(requests):
        text = f"short client reply {index}"
        submitted = time.monotonic()
        seen: float | None = None
        final: list[dict[str, Any]] = []
        for history_now, _ in client.submit(*chat_inputs(text), api_name="/chat"):
            if seen is None and answer(history_now):
                seen = time.monotonic()
            final = history_now
        if seen is None:
            raise RuntimeError(f"no reply text for {text!r}")
        runs.append((text, submitted, seen, final))
    client.close()

    trace = server_trace(url)
    moments: dict[str, list[float]] = {key: [] for key in ("overhead", "seen", "joined", "text_yield", "text_read", "text_handed_over")}
    for (text, submitted, seen, final), (event_id, log) in zip(runs, deques.logs.items(), strict=True):
        read, handed_over = stamps_of(log, first_text_message(log))
        moments["overhead"].append(seen - submitted - server_first_token(final, anchor=anchor))
        moments["seen"].append(seen - submitted)
        moments["joined"].append(joined[event_id] - submitted)
        moments["text_yield"].append(first_text_yield(trace[text]) - submitted)
        moments["text_read"].append(read - submitted)
        moments["text_handed_over"].append(handed_over - submitted)
    return medians_ms(moments)


def measure_concurrency(url: str, users: int, process: psutil.Process) -> dict[str, float]:
    """(b) with gradio_client: submit one 300-token chat per user at once and watch all jobs from one thread.

    Iterating 50 jobs in 50 threads would busy-poll (gradio_client's job
    iterator sleeps 1 ms per check) and take the CPU the server needs, so
    one loop reads each job's outputs every 5 ms instead.
    """
    clients = [Client(url + "/", verbose=False) for _ in range(users)]
    wait_until_idle(process.pid)
    cpu_before = process.cpu_times()
    client_cpu_before = time.process_time()
    jobs: list[Any] = []
    started: list[float] = []
    for number, client in enumerate(clients):
        started.append(time.perf_counter())
        jobs.append(client.submit(*chat_inputs(f"three hundred tokens for user {number}"), api_name="/chat"))

    first_tokens: dict[int, float] = {}
    client_cpu = float("nan")
    deadline = time.perf_counter() + 300
    while time.perf_counter() < deadline and not all(job.done() for job in jobs):
        now = time.perf_counter()
        for number, job in enumerate(jobs):
            if number in first_tokens:
                continue
            outputs = job.outputs()
            if outputs and answer(outputs[-1][0]):
                first_tokens[number] = now - started[number]
                if len(first_tokens) == users:
                    client_cpu = time.process_time() - client_cpu_before
        time.sleep(0.005)

    errors: list[str] = []
    for number, job in enumerate(jobs):
        try:
            history, _ = job.result(timeout=10)
            if len(answer(history).split()) != 300:
                raise RuntimeError(f"user {number}: incomplete reply")
        except Exception as exc:  # noqa: BLE001 - every failure is counted and shown
            errors.append(f"{type(exc).__name__}: {exc}")
    for client in clients:
        client.close()
    figures = load_figures(list(first_tokens.values()), errors, cpu_seconds(process, cpu_before))
    return figures | {"client_cpu_s": client_cpu}


def has_answer(arrival: queue_protocol.Arrival) -> bool:
    return arrival.outputs is not None and bool(answer(arrival.outputs[0]))


async def protocol_calls(url: str, texts: list[str], *, together: bool) -> list[queue_protocol.Timeline]:
    """Send each text to /chat with the browser-style client.

    One after another, the texts come from one user in one session, as from one
    browser tab. Together, each text comes from a user of its own, and all join at the same moment.
    """
    fn_index = queue_protocol.endpoint_index(url, "chat")
    limits = httpx.Limits(max_connections=2 * len(texts) + 10, max_keepalive_connections=2 * len(texts) + 10)
    async with httpx.AsyncClient(timeout=httpx.Timeout(120.0), limits=limits) as http:
        if together:
            calls = (queue_protocol.call(http, url, fn_index, chat_inputs(text), queue_protocol.new_session()) for text in texts)
            return list(await asyncio.gather(*calls))
        session = queue_protocol.new_session()
        return [await queue_protocol.call(http, url, fn_index, chat_inputs(text), session) for text in texts]


def measure_overhead_protocol(url: str, requests: int, *, anchor: bool = False) -> dict[str, float]:
    """(a) with the browser-style client: first-token overhead and the moments of a request (medians, ms after the join POST)."""
    texts = ["short warm-up", *(f"short protocol reply {index}" for index in range(requests))]
    timelines = asyncio.run(protocol_calls(url, texts, together=False))[1:]
    trace = server_trace(url)

    moments: dict[str, list[float]] = {key: [] for key in ("overhead", "joined", "entered", "text_yield", "text_read")}
    for text, timeline in zip(texts[1:], timelines, strict=True):
        first_text = timeline.first(has_answer)
        if timeline.error or first_text is None or timeline.final_outputs is None:
            raise RuntimeError(f"no reply text for {text!r}: {timeline.error}")
        start = timeline.join_sent
        moments["overhead"].append(first_text.at - start - server_first_token(timeline.final_outputs[0], anchor=anchor))
        moments["joined"].append(timeline.join_answered - start)
        moments["entered"].append(trace[text]["entered"] - start)
        moments["text_yield"].append(first_text_yield(trace[text]) - start)
        moments["text_read"].append(first_text.at - start)
    return medians_ms(moments)


def measure_concurrency_protocol(url: str, users: int, process: psutil.Process) -> dict[str, float]:
    """(b) with the browser-style client: every user joins at the same moment and reads its own event stream."""
    wait_until_idle(process.pid)
    cpu_before = process.cpu_times()
    texts = [f"three hundred tokens for protocol user {number}" for number in range(users)]
    timelines = asyncio.run(protocol_calls(url, texts, together=True))

    values: list[float] = []
    errors: list[str] = []
    for number, timeline in enumerate(timelines):
        first_text = timeline.first(has_answer)
        if first_text is not None:
            values.append(first_text.at - timeline.join_sent)
        outputs = timeline.final_outputs
        if timeline.error:
            errors.append(timeline.error)
        elif outputs is None or len(answer(outputs[0]).split()) != 300:
            errors.append(f"user {number}: incomplete reply")
    return load_figures(values, errors, cpu_seconds(process, cpu_before))


def cpu_seconds(process: psutil.Process, before: Any) -> float:
    after = process.cpu_times()
    return float((after.user + after.system) - (before.user + before.system))


def load_figures(values: list[float], errors: list[str], server_cpu: float) -> dict[str, float]:
    """Summarise first-token seconds, error messages and server CPU seconds of a (b) run."""
    for error in errors[:3]:
        print("error:", error, file=sys.stderr)
    return {
        "started_within_1s": sum(1 for value in values if value <= 1.0),
        "median_ttft_ms": statistics.median(values) * 1000 if values else float("nan"),
        "p95_ttft_ms": percentile(values, 0.95) * 1000 if values else float("nan"),
        "errors": len(errors),
        "server_cpu_s": server_cpu,
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
            samples.append(cpu_seconds(process, before))
            if len(answer(final).split()) != 500:
                raise RuntimeError(f"{label}: incomplete reply")
        results[label] = statistics.median(samples)
    client.close()
    return results


def httpx_client_cpu_ms() -> float:
    """Return the median CPU milliseconds this process spends creating one httpx.Client (its default TLS context)."""
    samples = []
    for _ in range(10):
        before = time.process_time()
        httpx.Client().close()
        samples.append((time.process_time() - before) * 1000)
    return statistics.median(samples)


def verdict(has_goal: bool, met: bool) -> str:
    """Return the last column of a table row: met or NOT met for a goal, "(would meet)" or "(would miss)" for comparison rows."""
    if not has_goal:
        return "(would meet)" if met else "(would miss)"
    return "met" if met else "NOT met"


def load_average() -> str:
    return f"{os.getloadavg()[0]:.1f}"


Row = tuple[str, str, str, str, str]


def overhead_rows(label: str, client: dict[str, float], protocol: dict[str, float], loads: tuple[str, str], *, anchor: bool) -> list[Row]:
    """Build the (a) rows of one server: gradio_client with its goal, the browser-style client for comparison, and the moments.

    `loads` are the load averages after the gradio_client and the browser-style measures.
    """
    goal = "reference" if anchor else "< 30 ms"
    rows: list[Row] = [
        (
            f"(a) first-token overhead, gradio_client, {label}",
            f"{client['overhead']:.1f} ms (client sees {client['seen']:.1f} ms)",
            goal,
            "" if anchor else verdict(True, client["overhead"] < 30),
            loads[0],
        ),
        (
            f"(a) first-token overhead, browser-style client, {label}",
            f"{protocol['overhead']:.1f} ms",
            "reference" if anchor else "none (same threshold, for comparison)",
            "" if anchor else verdict(False, protocol["overhead"] < 30),
            loads[1],
        ),
    ]
    if anchor:
        return rows
    rows += [
        (
            f"(a) moments, gradio_client, {label}",
            f"join POST returns {client['joined']:.1f} ms; handler yields first text {client['text_yield']:.1f} ms; "
            f"reader thread gets it {client['text_read']:.1f} ms; poller hands it over {client['text_handed_over']:.1f} ms; "
            f"caller sees it {client['seen']:.1f} ms (medians, after submit())",
            "",
            "",
            loads[0],
        ),
        (
            f"(a) moments, browser-style client, {label}",
            f"join POST answered {protocol['joined']:.1f} ms; handler entered {protocol['entered']:.1f} ms; "
            f"handler yields first text {protocol['text_yield']:.1f} ms; reader gets it {protocol['text_read']:.1f} ms "
            "(medians, after the join POST was sent)",
            "",
            "",
            loads[1],
        ),
    ]
    return rows


def concurrency_row(label: str, users: int, figures: dict[str, float], *, goal: bool, anchor: bool) -> Row:
    met = figures["started_within_1s"] == users and figures["errors"] == 0
    if anchor:
        goal_text, mark = "reference", ""
    elif goal:
        goal_text, mark = f"{users}/{users} within 1 s, 0 errors", verdict(True, met)
    else:
        goal_text, mark = "none (same threshold, for comparison)", verdict(False, met)
    return (
        f"(b) {users} users x 300 tokens, {label}",
        f"{figures['started_within_1s']:.0f}/{users} start within 1 s; first token median {figures['median_ttft_ms']:.0f} ms, "
        f"p95 {figures['p95_ttft_ms']:.0f} ms; {figures['errors']:.0f} errors; server CPU {figures['server_cpu_s']:.2f} s"
        + (f"; client process CPU until the last first token {figures['client_cpu_s']:.2f} s" if "client_cpu_s" in figures else ""),
        goal_text,
        mark,
        load_average(),
    )


def profile_concurrency(url: str, users: int, path: str, process: psutil.Process) -> None:
    """Run (b) with the browser-style client once more under cProfile (CPU clock) in the server and write the pstats file."""
    httpx.post(url + "/bench/profile", timeout=10)
    measure_concurrency_protocol(url, users, process)
    httpx.post(url + "/bench/profile", params={"path": path}, timeout=60)
    print(f"profile of (b) written to {path}; cProfile slows the server several times, so read shares, not times", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20, help="Requests for the first-token overhead (a).")
    parser.add_argument("--users", type=int, default=50, help="Concurrent users for (b).")
    parser.add_argument("--profile-b", metavar="FILE", help="Also profile Parley's server during (b) and write the pstats to FILE.")
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

    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, load {load_average()}")
    rows: list[Row] = []

    # (a) and (b): paced app, 10 ms between tokens (300 tokens take about 3 s),
    # each beside the bare Gradio anchor measured the same way.
    for label, config in (("Parley", bench_config(stream_interval_ms=60, chunk_delay=0.01)), ("anchor: bare Gradio", None)):
        anchor = config is None
        with server_process(config) as (url, process):
            client = measure_overhead(url, args.requests, anchor=anchor)
            client_load = load_average()
            protocol = measure_overhead_protocol(url, args.requests, anchor=anchor)
            rows += overhead_rows(label, client, protocol, (client_load, load_average()), anchor=anchor)
            protocol_load = measure_concurrency_protocol(url, args.users, process)
            protocol_row = concurrency_row(f"browser-style client, {label}", args.users, protocol_load, goal=False, anchor=anchor)
            rows.append(concurrency_row(f"gradio_client, {label}", args.users, measure_concurrency(url, args.users, process), goal=True, anchor=anchor))
            rows.append(protocol_row)
            if args.profile_b and not anchor:
                profile_concurrency(url, args.users, args.profile_b, process)

    # (c): 500 tokens at 5 ms each, paced (Parley) and pacing off (anchor).
    for label, interval in (("paced, 60 ms", 60), ("anchor: pacing off", 0)):
        with server_process(bench_config(stream_interval_ms=interval, chunk_delay=0.005)) as (url, process):
            cpu = measure_cpu(url, process)
        ratio = cpu["long"] / cpu["empty"] if cpu["empty"] else float("nan")
        rows.append(
            (
                f"(c) server CPU, 500 tokens, {label}",
                f"empty chat {cpu['empty']:.2f} s, 200 earlier messages {cpu['long']:.2f} s ({ratio:.2f}x)",
                "long < 2x empty" if interval else "reference",
                verdict(True, ratio < 2) if interval else "",
                load_average(),
            )
        )

    rows.append(
        (
            "(b) note: one new httpx.Client in the client process",
            f"{httpx_client_cpu_ms():.1f} ms CPU; gradio_client 2.7.2 creates two per job (join POST, event stream)",
            "",
            "",
            load_average(),
        )
    )

    print(f"load average at the end: {load_average()}")
    print()
    print("| measure | result | goal | | load |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
