"""The Redis cache store and the shared rate limit against a real redis-server on 127.0.0.1."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from backends import scripted
from backends.errors import ConfigError
from backends.layers.cache import CacheLayer, CacheSettings
from backends.layers.cache_store import MemoryStore, RedisStore
from backends.layers.clock import FakeClock
from backends.layers.metrics import Metrics
from backends.layers.ratelimit import RedisTokenBucket, TokenBucket
from backends.layers.redis_support import REDIS_RETRY_SECONDS, connect_redis
from backends.layers.settings import ResilienceSettings
from backends.layers.stack import open_services
from backends.pipeline import build_router
from backends.registry import BackendContext
from backends.types import ChatRequest, Event, Finished, Message, TextDelta
from config import parse_config

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(
        not Path(REDIS_SERVER).exists(),
        reason="redis-server is not installed; `make test` installs it (Debian package redis-server)",
    ),
]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class RedisProcess:
    """A redis-server child process on a random port of 127.0.0.1, without persistence."""

    def __init__(self, directory: Path, password: str | None = None) -> None:
        self.port = free_port()
        self.password = password
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(directory),
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
                *(["--requirepass", password] if password else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        client = redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.exceptions.ConnectionError:
                    if time.monotonic() > deadline or self._process.poll() is not None:
                        raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=10)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path)
    yield server
    server.stop()


def make_backend(*replies: dict[str, Any]) -> scripted.ScriptedBackend:
    settings = scripted.Settings(
        name="peer", kind="scripted", cycle=False, models=[{"name": "m"}], replies=list(replies)
    )
    backend = scripted.create(settings, BackendContext())
    assert isinstance(backend, scripted.ScriptedBackend)
    return backend


def request() -> ChatRequest:
    return ChatRequest(messages=(Message.text("user", "hi"),), model="m")


def text_of(events: list[Event]) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))


def redis_cache(url: str, backend: scripted.ScriptedBackend, clock: FakeClock) -> CacheLayer:
    """One process's cache layer: its own client and memory fallback over the shared Redis."""
    settings = CacheSettings(store="redis")
    client = connect_redis(url, "resilience.redis_url")
    store = RedisStore(client, settings.ttl_seconds, MemoryStore(10, settings.ttl_seconds, clock), clock)
    return CacheLayer(backend, store, settings, backend="peer", upstream_model="m", metrics=Metrics())


async def test_processes_share_cache_through_redis(redis_server: RedisProcess) -> None:
    clock = FakeClock()
    first_backend, second_backend = make_backend({"text": "shared words"}), make_backend({"text": "other"})
    first = redis_cache(redis_server.url, first_backend, clock)
    second = redis_cache(redis_server.url, second_backend, clock)

    stored = [event async for event in first.stream(request())]
    replayed = [event async for event in second.stream(request())]

    assert text_of(stored) == text_of(replayed) == "shared words"
    assert len(first_backend.received) == 1
    assert second_backend.received == []
    end = replayed[-1]
    assert isinstance(end, Finished)
    assert end.cached is True
    assert end.served_by == "peer/m"


async def test_redis_entry_carries_ttl(redis_server: RedisProcess) -> None:
    clock = FakeClock()
    layer = redis_cache(redis_server.url, make_backend({"text": "x"}), clock)

    [event async for event in layer.stream(request())]

    client = redis.Redis.from_url(redis_server.url)
    keys = client.keys("parley:cache:*")
    assert len(keys) == 1
    assert 3590 < client.pttl(keys[0]) / 1000 <= 3600
    client.close()


async def test_redis_down_degrades_to_memory_with_one_warning(
    redis_server: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    clock = FakeClock()
    backend = make_backend({"text": "first"}, {"text": "second"})
    layer = redis_cache(redis_server.url, backend, clock)

    redis_server.stop()
    first = [event async for event in layer.stream(request())]
    second = [event async for event in layer.stream(request())]
    clock.advance(REDIS_RETRY_SECONDS + 1)
    third = [event async for event in layer.stream(request())]

    assert text_of(first) == "first"
    assert text_of(second) == text_of(third) == "first"
    assert len(backend.received) == 1
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "Redis failed for the response cache" in warnings[0].getMessage()


def test_unreachable_redis_at_start_is_config_error() -> None:
    settings = ResilienceSettings(redis_url=f"redis://127.0.0.1:{free_port()}/0", cache=CacheSettings(store="redis"))

    with pytest.raises(ConfigError) as caught:
        open_services(settings)

    message = str(caught.value)
    assert "resilience.redis_url" in message
    assert "failed the start-up PING" in message
    assert "Start Redis at that address" in message


def test_redis_password_is_not_in_error() -> None:
    url = f"redis://user:hunter2secret@127.0.0.1:{free_port()}/0"

    with pytest.raises(ConfigError) as caught:
        connect_redis(url, "resilience.redis_url")

    assert "hunter2secret" not in str(caught.value)


async def test_processes_share_rate_limit(redis_server: RedisProcess) -> None:
    clock = FakeClock()
    buckets = [
        RedisTokenBucket(
            connect_redis(redis_server.url, "resilience.redis_url"),
            "remote",
            rate=1.0,
            burst=1,
            clock=clock,
            fallback=TokenBucket(1.0, 1, clock),
        )
        for _ in range(2)
    ]

    first = await buckets[0].reserve(max_wait=2.0)
    second = await buckets[1].reserve(max_wait=2.0)
    refused = await buckets[0].reserve(max_wait=1.5)
    clock.advance(2.0)
    after_refill = await buckets[1].reserve(max_wait=0.0)

    assert first == 0.0
    assert second == pytest.approx(1.0)
    assert refused is None
    assert after_refill == 0.0


async def test_rate_limit_uses_memory_when_redis_dies(
    redis_server: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    clock = FakeClock()
    bucket = RedisTokenBucket(
        connect_redis(redis_server.url, "resilience.redis_url"),
        "remote",
        rate=1.0,
        burst=1,
        clock=clock,
        fallback=TokenBucket(1.0, 1, clock),
    )

    redis_server.stop()
    first = await bucket.reserve(max_wait=0.0)
    second = await bucket.reserve(max_wait=0.0)

    assert first == 0.0
    assert second is None
    assert len([record for record in caplog.records if record.levelno == logging.WARNING]) == 1


async def test_two_routers_share_cache_from_config(redis_server: RedisProcess) -> None:
    raw: dict[str, Any] = {
        "backends": [
            {"name": "peer", "kind": "scripted", "models": [{"name": "m"}], "replies": [{"text": "configured"}]},
        ],
        "resilience": {"redis_url": redis_server.url, "cache": {"store": "redis"}},
    }
    config = parse_config(raw, source="test config", env={})
    routers = [build_router(config, BackendContext()) for _ in range(2)]

    first = [event async for event in routers[0].stream(request())]
    second = [event async for event in routers[1].stream(request())]
    for router in routers:
        await router.aclose()

    assert text_of(first) == text_of(second) == "configured"
    end = second[-1]
    assert isinstance(end, Finished)
    assert end.cached is True
    peer = routers[1].backends["peer"]
    assert isinstance(peer, scripted.ScriptedBackend)
    assert peer.received == []


def test_redis_password_comes_from_environment(tmp_path: Path) -> None:
    server = RedisProcess(tmp_path, password="pw-from-env-7c1")
    settings = ResilienceSettings(redis_url=server.url, redis_password_env="PARLEY_REDIS_PASSWORD")
    try:
        services = open_services(settings, env={"PARLEY_REDIS_PASSWORD": "pw-from-env-7c1"})
        with pytest.raises(ConfigError) as missing:
            open_services(settings, env={})
        with pytest.raises(ConfigError) as wrong:
            open_services(settings, env={"PARLEY_REDIS_PASSWORD": "not-the-password"})
    finally:
        server.stop()

    assert services.redis is not None
    assert "PARLEY_REDIS_PASSWORD, which is not set" in str(missing.value)
    assert "failed the start-up PING" in str(wrong.value)
    assert "not-the-password" not in str(wrong.value)
