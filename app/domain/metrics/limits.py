"""Per-API-key token buckets on ingested points, so one client cannot starve the rest.

With a Redis broker the buckets live in Redis (one budget per key across every API process
and replica); otherwise each process keeps its own. A limiter that cannot reach Redis lets the
request through: losing metrics to a limiter outage would be worse than a burst.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Hashable
from functools import lru_cache

import redis

from app.errors import TooManyRequests
from app.ratelimit import Buckets, LocalBuckets, RedisBuckets, is_redis
from app.settings import Settings

log = logging.getLogger(__name__)


class _AllowWhenDown:
    """Shared buckets that let a batch through when Redis cannot answer."""

    def __init__(self, buckets: RedisBuckets) -> None:
        self._buckets = buckets

    def take(self, key: Hashable, cost: float = 1.0) -> float:
        try:
            return self._buckets.take(key, cost)
        except redis.RedisError as exc:
            log.warning("ingest limiter unavailable, letting the batch through: %s", exc)
            return 0.0


@lru_cache
def _limiter(broker_url: str, rate: float, burst: int) -> Buckets:
    if is_redis(broker_url):
        client = redis.Redis.from_url(broker_url, socket_timeout=0.5, socket_connect_timeout=0.5)
        return _AllowWhenDown(RedisBuckets(client, rate, burst, prefix="stratus:ingest:"))
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
