"""Per-API-key token buckets on ingested points, so one client cannot starve the rest.

With a Redis broker the buckets live in Redis (one budget per key across every API process
and replica); otherwise each process keeps its own. A limiter that cannot reach Redis lets the
request through: losing metrics to a limiter outage would be worse than a burst.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from functools import lru_cache
from typing import Protocol

import redis

from app.errors import TooManyRequests
from app.settings import Settings

log = logging.getLogger(__name__)

REDIS_SCHEMES = frozenset({"redis", "rediss"})

# Refill by elapsed time on the server's clock, take ``cost`` if there is enough, else say how
# long until there will be. Returns the wait in seconds as a string (Lua numbers truncate).
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
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


class PointLimiter(Protocol):
    def take(self, key: uuid.UUID, cost: int) -> float:
        """Spend ``cost`` points of ``key``'s budget; 0, or the seconds to wait before retrying."""
        ...


class LocalBuckets:
    """Token buckets in this process's memory."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._lock = threading.Lock()
        self._buckets: dict[uuid.UUID, tuple[float, float]] = {}

    def take(self, key: uuid.UUID, cost: int) -> float:
        now = time.monotonic()
        with self._lock:
            tokens, at = self._buckets.get(key, (float(self.burst), now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            wait = 0.0
            if tokens >= cost:
                tokens -= cost
            else:
                wait = (cost - tokens) / self.rate
            self._buckets[key] = (tokens, now)
        return wait


class RedisBuckets:
    """Token buckets shared by every API process through Redis."""

    def __init__(self, url: str, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._take = self._client.register_script(_TAKE)

    def take(self, key: uuid.UUID, cost: int) -> float:
        try:
            wait = self._take(keys=[f"stratus:ingest:{key}"], args=[self.rate, self.burst, cost])
        except redis.RedisError as exc:
            log.warning("ingest limiter unavailable, letting the batch through: %s", exc)
            return 0.0
        return float(wait)


@lru_cache
def _limiter(broker_url: str, rate: float, burst: int) -> PointLimiter:
    if broker_url.split("://", 1)[0] in REDIS_SCHEMES:
        return RedisBuckets(broker_url, rate, burst)
    return LocalBuckets(rate, burst)


def charge(settings: Settings, key: uuid.UUID, points: int) -> None:
    """Spend ``points`` of the key's ingest budget, or refuse with 429 and a Retry-After."""
    rate = settings.metrics.ingest_points_per_s
    if rate <= 0:
        return
    limiter = _limiter(settings.effective_broker_url, rate, settings.metrics.ingest_burst_points)
    wait = limiter.take(key, points)
    if wait > 0:
        retry_after = max(1, math.ceil(wait))
        raise TooManyRequests(
            f"This API key is over its ingest budget of {rate:g} points/s; "
            f"retry in {retry_after} s.",
            code="ingest_rate_limited",
            headers={"Retry-After": str(retry_after)},
        )
