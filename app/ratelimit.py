"""Token buckets by key: in Redis when the broker is Redis (one budget across every process
and host, timed by the Redis server's clock), otherwise in this process's memory.

Callers decide what a Redis outage means for them (wait on a local bucket, or let through).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Protocol

import redis

# Refill by elapsed time, take ``cost`` if there is enough, else say how long until there
# will be. Returns the wait in seconds as a string (Lua numbers would be truncated).
_TAKE = """
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= cost then tokens = tokens - cost else wait = (cost - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""
REDIS_SCHEMES = frozenset({"redis", "rediss"})


def is_redis(url: str) -> bool:
    """Whether ``url`` names a Redis server (where shared buckets live)."""
    return url.split("://", 1)[0] in REDIS_SCHEMES


class Buckets(Protocol):
    def take(self, key: Hashable, cost: float = 1.0) -> float:
        """Spend ``cost`` of ``key``'s budget and return 0, or the seconds until it could."""
        ...


class LocalBuckets:
    """Token buckets in this process's memory, one per key."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] | None = None) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock if clock is not None else time.monotonic
        self._lock = threading.Lock()
        self._buckets: dict[Hashable, tuple[float, float]] = {}

    def take(self, key: Hashable, cost: float = 1.0) -> float:
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + max(0.0, now - at) * self.rate)
            wait = 0.0
            if tokens >= cost:
                tokens -= cost
            else:
                wait = (cost - tokens) / self.rate
            self._buckets[key] = (tokens, now)
        return wait


class RedisBuckets:
    """Token buckets in Redis, shared by every process using the same keys.

    ``take`` raises ``redis.RedisError`` when Redis cannot answer.
    """

    def __init__(self, client: redis.Redis, rate: float, burst: float, prefix: str = "") -> None:
        self.rate = rate
        self.burst = burst
        self.prefix = prefix
        self._script = client.register_script(_TAKE)

    def take(self, key: Hashable, cost: float = 1.0) -> float:
        return float(self._script(keys=[f"{self.prefix}{key}"], args=[self.rate, self.burst, cost]))
