"""Helper processes for benchmarks: start a server, wait until it responds, wait until it is idle.

A benchmark that measures a server in its own process imports these instead
of keeping a copy:

    from bench.processes import free_port, run_process, wait_until_idle
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(url: str, timeout: float = 60.0) -> None:
    """Wait until `url` returns any HTTP response; raises RuntimeError after `timeout` seconds."""
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
def run_process(args: list[str], ready_url: str, env: dict[str, str] | None = None) -> Iterator[int]:
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


def wait_until_idle(pid: int, *, limit: float = 90.0, max_percent: float = 10.0) -> float:
    """Wait until process `pid` uses under `max_percent` of one core over one second; return the seconds waited.

    Parley loads the Whisper model in a background thread after start-up, so
    a request measured right after start-up can share the CPU with that load.
    After `limit` seconds this prints a warning and returns anyway.
    """
    process = psutil.Process(pid)
    started = time.monotonic()
    process.cpu_percent(None)
    while time.monotonic() - started < limit:
        if process.cpu_percent(1.0) < max_percent:
            return time.monotonic() - started
    print(f"warning: process {pid} was still busy {limit:.0f} s after start", file=sys.stderr)
    return time.monotonic() - started
