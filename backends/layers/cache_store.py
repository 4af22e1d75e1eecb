"""Response cache stores: process memory, or Redis shared by several processes."""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

import redis.asyncio as redis_asyncio
from cachetools import TTLCache

from backends.layers.clock import Clock
from backends.layers.redis_support import REDIS_FAILURES, RedisOutage

logger = logging.getLogger(__name__)

# Keys in Redis carry this prefix so the cache can share a database with other data.
REDIS_KEY_PREFIX = "parley:cache:"

Entry = dict[str, Any]


class CacheStore(Protocol):
    name: str

    async def get(self, key: str) -> Entry | None: ...

    async def set(self, key: str, entry: Entry) -> None: ...


class MemoryStore:
    """An LRU cache in process memory whose entries expire `ttl` seconds after they were stored."""

    name = "memory"

    def __init__(self, max_entries: int, ttl: float, clock: Clock) -> None:
        self._entries: TTLCache[str, Entry] = TTLCache(maxsize=max_entries, ttl=ttl, timer=clock.monotonic)

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> Entry | None:
        return self._entries.get(key)

    async def set(self, key: str, entry: Entry) -> None:
        self._entries[key] = entry


class RedisStore:
    """Entries in Redis with a TTL, so several Parley processes share one cache.

    Redis bounds its size itself (its maxmemory policy), so `max_entries`
    applies only to the memory store this one degrades to: when Redis fails
    at run time, one WARNING is logged and requests keep working from memory.
    The client belongs to the caller, who closes it.
    """

    name = "redis"

    def __init__(self, client: redis_asyncio.Redis, ttl: float, fallback: MemoryStore, clock: Clock) -> None:
        self._client = client
        self._ttl_ms = max(int(ttl * 1000), 1)
        self._fallback = fallback
        self.outage = RedisOutage("response cache", clock)

    async def get(self, key: str) -> Entry | None:
        if not self.outage.usable():
            return await self._fallback.get(key)

        try:
            raw = await self._client.get(REDIS_KEY_PREFIX + key)
        except REDIS_FAILURES as exc:
            self.outage.failed(exc)
            return await self._fallback.get(key)
        self.outage.succeeded()

        if raw is None:
            return None
        try:
            entry: Entry = json.loads(raw)
        except ValueError:
            # Written by something else under our prefix: a miss, and the next reply replaces it.
            logger.warning("ignoring a cache entry in Redis that is not valid JSON: %s", REDIS_KEY_PREFIX + key)
            return None
        return entry

    async def set(self, key: str, entry: Entry) -> None:
        if not self.outage.usable():
            await self._fallback.set(key, entry)
            return

        try:
            await self._client.set(REDIS_KEY_PREFIX + key, json.dumps(entry, ensure_ascii=False), px=self._ttl_ms)
        except REDIS_FAILURES as exc:
            self.outage.failed(exc)
            await self._fallback.set(key, entry)
            return
        self.outage.succeeded()
