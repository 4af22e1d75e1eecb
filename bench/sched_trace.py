"""Scheduler trace: where (d0)'s and (d)'s time to the first chunk waits for a CPU.

    sudo .venv/bin/python bench/sched_trace.py [--chunks 2000] [--runs 10]

Starts the same fake upstream, pass-through proxy and gateway as
bench/stream_overhead.py, then reads replies with the openai SDK: (c) from
the upstream directly, (d0) through the proxy and (d) through the gateway.
While each client runs, `perf record` traces the kernel's scheduler events
on all CPUs. For every reply the script prints how long, before its first
chunk arrived, one of the three processes was ready to run but waited for a
CPU, and how much of that wait passed while another CPU sat idle.

Needs Linux, root (or a low `perf_event_paranoid`), Debian's `linux-perf`
package and tracefs, which the script mounts when it is missing. The
timestamps come from CLOCK_MONOTONIC (`perf record -k mono`), the clock of
`time.perf_counter()`, so the trace and the client's moments line up.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.processes import free_port, run_process, wait_until_idle  # noqa: E402
from bench.stream_overhead import _NO_CACHE, GATEWAY_MODEL, MODEL, OpenAISdkClient  # noqa: E402

TRACEFS = Path("/sys/kernel/tracing")
EVENTS = "sched:sched_switch,sched:sched_wakeup,sched:sched_wakeup_new"
# Replies are spaced out so that each one starts on an idle machine, as in stream_overhead.py.
PAUSE_SECONDS = 0.1

_LINE = re.compile(r"\[(?P<cpu>\d+)\]\s+(?P<time>[\d.]+):\s+sched:(?P<event>\w+):\s+(?P<fields>.*)")
_SWITCH = re.compile(r"prev_pid=(?P<prev>\d+) .*prev_state=(?P<state>\S+) ==> .*next_pid=(?P<next>\d+)")
_WAKEUP = re.compile(r"pid=(?P<pid>\d+) .*target_cpu=(?P<cpu>\d+)")


@dataclass
class Reply:
    """One measured reply: when it was requested and when its first chunk arrived (perf_counter seconds)."""

    sent: float
    first_chunk: float


@dataclass
class Waits:
    """Run-queue waits of one process before a reply's first chunk, in seconds."""

    waited: float = 0.0
    waited_while_a_cpu_idled: float = 0.0


@dataclass
class Timeline:
    """The scheduler events of a trace, reduced to what the report needs."""

    # pid -> [(ready since, running from)]: intervals in which the thread was runnable but not running.
    ready: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    # cpu -> [(idle from, idle until)].
    idle: dict[int, list[tuple[float, float]]] = field(default_factory=dict)


def check_perf() -> None:
    """Exit with the fix when perf or tracefs is missing."""
    if shutil.which("perf") is None:
        sys.exit("perf was not found; install it with `apt-get install linux-perf` and run this script again.")
    if not (TRACEFS / "events").exists():
        result = subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACEFS)], capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"tracefs is not mounted at {TRACEFS} and mounting it failed ({result.stderr.strip()}); run this script as root.")


def parse_trace(text: str) -> Timeline:
    """Build each thread's ready intervals and each CPU's idle intervals from `perf script` output."""
    timeline = Timeline()
    woken_at: dict[int, float] = {}
    idle_since: dict[int, float] = {}

    for line in text.splitlines():
        match = _LINE.search(line)
        if match is None:
            continue
        cpu, moment, event = int(match["cpu"]), float(match["time"]), match["event"]

        if event.startswith("sched_wakeup"):
            wakeup = _WAKEUP.search(match["fields"])
            if wakeup is not None:
                woken_at.setdefault(int(wakeup["pid"]), moment)
            continue

        switch = _SWITCH.search(match["fields"])
        if switch is None:
            continue
        previous, following = int(switch["prev"]), int(switch["next"])
        # A thread switched out while still runnable (preempted) is ready again at once.
        if previous != 0 and switch["state"].startswith("R"):
            woken_at[previous] = moment
        if following in woken_at:
            timeline.ready.setdefault(following, []).append((woken_at.pop(following), moment))

        if following == 0:
            idle_since[cpu] = moment
        elif previous == 0 and cpu in idle_since:
            timeline.idle.setdefault(cpu, []).append((idle_since.pop(cpu), moment))
    return timeline


def overlap(start: float, end: float, intervals: list[tuple[float, float]]) -> float:
    return sum(max(0.0, min(end, stop) - max(start, begin)) for begin, stop in intervals)


def waits_before_first_chunk(timeline: Timeline, pid: int, reply: Reply) -> Waits:
    """Sum the run-queue waits of `pid` between a reply's request and its first chunk."""
    waits = Waits()
    for ready, running in timeline.ready.get(pid, []):
        start, end = max(ready, reply.sent), min(running, reply.first_chunk)
        if end <= start:
            continue
        waits.waited += end - start
        # Time in which some CPU idled while this thread waited: the scheduler could have run it.
        idle_cpus = [overlap(start, end, intervals) for intervals in timeline.idle.values()]
        waits.waited_while_a_cpu_idled += max(idle_cpus, default=0.0)
    return waits


async def read_replies(base_url: str, model: str, runs: int, headers: dict[str, str] | None) -> list[Reply]:
    client = OpenAISdkClient(base_url, model, headers=headers)
    replies: list[Reply] = []
    try:
        await client()
        for _ in range(runs):
            await asyncio.sleep(PAUSE_SECONDS)
            sent = time.perf_counter()
            first, _count, _total = await client()
            replies.append(Reply(sent, sent + first))
    finally:
        await client.aclose()
    return replies


def traced(base_url: str, model: str, runs: int, headers: dict[str, str] | None, folder: Path) -> tuple[list[Reply], Timeline]:
    """Read `runs` replies while perf records the scheduler events of all CPUs."""
    data = folder / "perf.data"
    recorder = subprocess.Popen(
        ["perf", "record", "-a", "-k", "mono", "-e", EVENTS, "-o", str(data)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # perf needs a moment to open its events on every CPU.
    time.sleep(1.0)
    try:
        replies = asyncio.run(read_replies(base_url, model, runs, headers))
    finally:
        time.sleep(0.1)
        recorder.send_signal(signal.SIGINT)
        recorder.wait()
    script = subprocess.run(["perf", "script", "-i", str(data)], capture_output=True, text=True, check=True)
    return replies, parse_trace(script.stdout)


def report(label: str, replies: list[Reply], timeline: Timeline, pids: dict[str, int]) -> None:
    print(f"\n{label}: {len(replies)} replies, median of each column, ms")
    names = list(pids)
    header = " | ".join(f"{name} waited | of it with a CPU idle" for name in names)
    print(f"| first chunk | {header} |")
    print("|---:|" + "---:|---:|" * len(names))
    cells = [f"{statistics.median(r.first_chunk - r.sent for r in replies) * 1000:.2f}"]
    for name in names:
        waits = [waits_before_first_chunk(timeline, pids[name], reply) for reply in replies]
        cells.append(f"{statistics.median(w.waited for w in waits) * 1000:.2f}")
        cells.append(f"{statistics.median(w.waited_while_a_cpu_idled for w in waits) * 1000:.2f}")
    print("| " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=2000, help="Content chunks in each reply.")
    parser.add_argument("--runs", type=int, default=10, help="Traced replies per client, after one warm-up reply.")
    args = parser.parse_args()
    check_perf()

    server_port, gateway_port, proxy_port = free_port(), free_port(), free_port()
    base_url = f"http://127.0.0.1:{server_port}/v1"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    overhead = str(ROOT / "bench" / "stream_overhead.py")
    server = [sys.executable, "-m", "tests.fakes.openai_server", "--port", str(server_port), "--chunks", str(args.chunks)]
    gateway = [sys.executable, overhead, "--serve-gateway", base_url, "--port", str(gateway_port)]
    proxy = [sys.executable, overhead, "--serve-proxy", base_url, "--port", str(proxy_port)]

    with (
        run_process(server, f"{base_url}/models", env) as upstream_pid,
        run_process(gateway, f"http://127.0.0.1:{gateway_port}/healthz", env) as gateway_pid,
        run_process(proxy, f"http://127.0.0.1:{proxy_port}/healthz", env) as proxy_pid,
        tempfile.TemporaryDirectory() as folder,
    ):
        for pid in (gateway_pid, proxy_pid):
            wait_until_idle(pid)
        print(f"Scheduler trace, {args.chunks} chunks per reply, load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")
        print("'waited': ready to run but not running; 'with a CPU idle': the part of that wait in which another CPU idled")
        client_pid = os.getpid()
        cases = [
            ("(c) openai SDK direct to the upstream", base_url, MODEL, None, {"client": client_pid, "upstream": upstream_pid}),
            ("(d0) through the pass-through proxy", f"http://127.0.0.1:{proxy_port}/v1", MODEL, None, {"proxy": proxy_pid, "upstream": upstream_pid}),
            (
                "(d) through Parley's gateway",
                f"http://127.0.0.1:{gateway_port}/v1",
                GATEWAY_MODEL,
                _NO_CACHE,
                {"gateway": gateway_pid, "upstream": upstream_pid},
            ),
        ]
        for label, url, model, headers, pids in cases:
            replies, timeline = traced(url, model, args.runs, headers, Path(folder))
            report(label, replies, timeline, {"client": client_pid, **pids})


if __name__ == "__main__":
    main()
