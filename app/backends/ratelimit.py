"""Token buckets that keep every worker together under a cloud API's request rate.

With a Redis broker the bucket lives in Redis (one Lua script per take, timed by the Redis
server's clock so workers on different hosts agree); otherwise it lives in this process.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Protocol

import redis

from app.backends.base import BackendError
from app.ratelimit import LocalBuckets, RedisBuckets, is_redis

logger = logging.getLogger(__name__)


class TokenBucket(Protocol):
    """A shared request budget: ``try_take`` never blocks, ``acquire`` waits for a token."""

    def try_take(self) -> float:
        """Take a token and return 0, or return the seconds until one is free."""
        ...

    def acquire(self, timeout_s: float) -> None:
        """Wait for a token; BackendError (retryable) when none frees up within the timeout."""
        ...


class _Waiting(ABC):
    """``acquire`` on top of ``try_take``, with an injectable clock for tests."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep

    @abstractmethod
    def try_take(self) -> float:
        """Take a token and return 0, or return the seconds until one is free."""

    def acquire(self, timeout_s: float) -> None:
        deadline = self._clock() + timeout_s
        while True:
            wait = self.try_take()
            if wait <= 0:
                return
            if self._clock() + wait > deadline:
                raise BackendError(
                    f"API request budget exhausted for {timeout_s:.0f}s; try again later",
                    retryable=True,
                )
            # Jitter so workers woken together do not race for the same token.
            self._sleep(wait * (1 + 0.1 * random.random()))  # noqa: S311 - not security


class InProcessTokenBucket(_Waiting):
    """A bucket shared by the threads of this process."""

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(clock, sleep)
        self._buckets = LocalBuckets(rate_per_s, burst, clock)

    def try_take(self) -> float:
        return self._buckets.take("")


class RedisTokenBucket(_Waiting):
    """A bucket in Redis shared by every process that uses the same key."""

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        rate_per_s: float,
        burst: int,
        *,
        fallback: TokenBucket | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(sleep=sleep)
        self.key = key
        self._buckets = RedisBuckets(client, rate_per_s, burst)
        # Redis down should not stop the control plane: fall back to a per-process budget.
        self._fallback = fallback or InProcessTokenBucket(rate_per_s, burst)

    def try_take(self) -> float:
        try:
            return self._buckets.take(self.key)
        except redis.RedisError as exc:
            logger.warning(
                "rate limit bucket %s unavailable (%s); using a local one", self.key, exc
            )
            return self._fallback.try_take()


_LOCAL: dict[str, InProcessTokenBucket] = {}
_LOCAL_LOCK = threading.Lock()


def bucket_for(broker_url: str, key: str, rate_per_s: float, burst: int) -> TokenBucket:
    """The bucket behind ``key``: in Redis when the broker is Redis, else one per process."""
    if is_redis(broker_url):
        client = redis.Redis.from_url(broker_url, socket_timeout=2, socket_connect_timeout=2)
        return RedisTokenBucket(client, key, rate_per_s, burst)
    with _LOCAL_LOCK:
        if key not in _LOCAL:
            _LOCAL[key] = InProcessTokenBucket(rate_per_s, burst)
        return _LOCAL[key]
