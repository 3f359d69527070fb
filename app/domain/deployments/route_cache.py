"""A per-process memory of where a caller's invocations go, so a model request needs no
database round trip.

An entry maps (key hash, deployment) to the deployment's backend and endpoint, written only
after the caller was authenticated and authorized and the deployment was serving. It is used
as is for ``ttl_s`` (the bound on how late a deployment's deletion or a lost membership
reaches another API process); the key itself is checked against the principal cache on every
request, so a revoked key is refused as quickly as on any other route. Past ``ttl_s`` the
entry is only a fallback: while the database is unreachable, invocations keep using it for up
to ``stale_max_s``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

MAX_ROUTES = 16_384  # bounds the memory; far more (key, deployment) pairs than one process sees
DB_BACKOFF_S = 1.0  # after a failed database read, requests use the fallback without retrying


@dataclass(frozen=True)
class Target:
    """Where a deployment's requests go."""

    backend: str
    endpoint: str


RouteKey = tuple[str, uuid.UUID]


class RouteCache:
    """Targets by (key hash, deployment id), with the time each was confirmed."""

    def __init__(
        self, max_routes: int = MAX_ROUTES, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_routes = max_routes
        self._clock = clock
        self._lock = threading.Lock()
        self._routes: dict[RouteKey, tuple[float, Target]] = {}
        self._db_down_until = 0.0

    def __len__(self) -> int:
        return len(self._routes)

    def fresh(self, key: RouteKey, ttl_s: float) -> Target | None:
        """The target confirmed within the last ``ttl_s`` seconds, if any."""
        entry = self._routes.get(key)
        if entry is None or self._clock() - entry[0] >= ttl_s:
            return None
        return entry[1]

    def stale(self, key: RouteKey, max_age_s: float) -> Target | None:
        """The last confirmed target if it is at most ``max_age_s`` old (database down)."""
        entry = self._routes.get(key)
        if entry is None or self._clock() - entry[0] > max_age_s:
            return None
        return entry[1]

    def put(self, key: RouteKey, target: Target) -> None:
        with self._lock:
            self._routes.pop(key, None)  # re-inserted last: dict order is age order
            if len(self._routes) >= self.max_routes:
                del self._routes[next(iter(self._routes))]
            self._routes[key] = (self._clock(), target)

    def forget(self, key: RouteKey) -> None:
        """Drop a route the database no longer confirms (refused key, gone deployment)."""
        with self._lock:
            self._routes.pop(key, None)

    def forget_key(self, key_hash: str) -> None:
        """Drop every route of a revoked key, so no fallback can serve it."""
        with self._lock:
            for key in [k for k in self._routes if k[0] == key_hash]:
                del self._routes[key]

    def database_failed(self) -> None:
        """Note that reading the database just failed: skip it for ``DB_BACKOFF_S``."""
        self._db_down_until = self._clock() + DB_BACKOFF_S

    def database_backing_off(self) -> bool:
        """Whether a read failed so recently that the fallback is used without trying."""
        return self._clock() < self._db_down_until

    def clear(self) -> None:
        with self._lock:
            self._routes.clear()
            self._db_down_until = 0.0


routes = RouteCache()
