"""Token buckets that cap requests per second to an endpoint, in memory or shared through Redis."""

from __future__ import annotations

import math
from typing import Protocol

import redis.asyncio as redis_asyncio

from backends.layers.clock import Clock
from backends.layers.redis_support import REDIS_FAILURES, RedisOutage

REDIS_KEY_PREFIX = "parley:ratelimit:"

# Reserve one token from a bucket stored as a hash {tokens, ts}, atomically.
# KEYS[1] bucket; ARGV rate (tokens/s), burst, now (s), max_wait (s).
# Returns the wait in seconds as a string, because Redis truncates a Lua number
# to an integer. Returns "-1" when the wait would exceed max_wait, and then
# takes no token.
_RESERVE_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local max_wait = tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate)
  ts = now
end
local wait = 0
if tokens < 1 then
  wait = (1 - tokens) / rate
end
if wait > max_wait then
  return '-1'
end
redis.call('HSET', KEYS[1], 'tokens', tokens - 1, 'ts', ts)
redis.call('PEXPIRE', KEYS[1], math.ceil((burst / rate + max_wait + 1) * 1000))
return tostring(wait)
"""


class RateLimiter(Protocol):
    async def reserve(self, max_wait: float) -> float | None:
        """Take one token and return how long to wait before using it, or None if that exceeds `max_wait`."""
        ...


class TokenBucket:
    """A bucket of `burst` tokens refilled at `rate` per second, in process memory.

    A reservation may take the bucket below zero, so waiting requests are
    served in the order they reserved.
    """

    def __init__(self, rate: float, burst: float, clock: Clock) -> None:
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._tokens = burst
        self._updated = clock.monotonic()

    async def reserve(self, max_wait: float) -> float | None:
        return self.reserve_now(max_wait)

    def reserve_now(self, max_wait: float) -> float | None:
        now = self._clock.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now

        wait = 0.0 if self._tokens >= 1 else (1 - self._tokens) / self._rate
        if wait > max_wait:
            return None
        self._tokens -= 1
        return wait


class RedisTokenBucket:
    """A token bucket kept in Redis and updated by one Lua script, so several processes share the limit.

    Time comes from each process's wall clock. When Redis fails at run time
    the bucket falls back to a per-process one with one WARNING.
    """

    def __init__(
        self, client: redis_asyncio.Redis, key: str, rate: float, burst: float, clock: Clock, fallback: TokenBucket
    ) -> None:
        self._client = client
        self._key = REDIS_KEY_PREFIX + key
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._fallback = fallback
        self._script = client.register_script(_RESERVE_LUA)
        self.outage = RedisOutage("rate limit", clock)

    async def reserve(self, max_wait: float) -> float | None:
        if not self.outage.usable():
            return self._fallback.reserve_now(max_wait)

        try:
            raw = await self._script(
                keys=[self._key], args=[repr(self._rate), repr(self._burst), repr(self._clock.time()), repr(max_wait)]
            )
        except REDIS_FAILURES as exc:
            self.outage.failed(exc)
            return self._fallback.reserve_now(max_wait)
        self.outage.succeeded()

        wait = float(raw.decode() if isinstance(raw, bytes) else raw)
        if wait < 0 or math.isnan(wait):
            return None
        return wait
