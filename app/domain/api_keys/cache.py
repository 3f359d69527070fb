"""A short-lived, per-process memory of authenticated keys, so a busy client (a trainer
posting a metric batch a second) is not looked up in the database on every request.

An entry lives ``TTL_S`` seconds: a key revoked through this process is forgotten at once
(``forget``), and everywhere else it stops working within ``TTL_S``. Only keys that were
found active are remembered, never unknown secrets, so a flood of bad keys cannot fill it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from app.domain.access import Principal

TTL_S = 5.0  # how long a revocation may take to reach the other API processes
MAX_KEYS = 4096  # far more keys than one process sees within TTL_S; bounds the memory


class PrincipalCache:
    """Principals by key hash, each kept ``ttl_s`` seconds, at most ``max_keys`` of them."""

    def __init__(
        self,
        ttl_s: float = TTL_S,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, Principal]] = {}
        # Keys forgotten in the last ttl_s are not remembered again meanwhile: a request that
        # read the key just before its revocation committed must not cache it afresh.
        self._forgotten: dict[str, float] = {}
        self._on_forget: list[Callable[[str], None]] = []

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key_hash: str) -> Principal | None:
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        expires, principal = entry
        if self._clock() >= expires:
            with self._lock:
                if self._entries.get(key_hash) is entry:
                    del self._entries[key_hash]
            return None
        return principal

    def put(self, key_hash: str, principal: Principal) -> None:
        if self.ttl_s <= 0:
            return
        now = self._clock()
        with self._lock:
            if self._forgotten.get(key_hash, now) > now:
                return
            self._entries.pop(key_hash, None)  # re-inserted last: dict order is age order
            if len(self._entries) >= self.max_keys:
                del self._entries[next(iter(self._entries))]
            self._entries[key_hash] = (now + self.ttl_s, principal)

    def forget(self, key_hash: str) -> None:
        """Drop a revoked key, and remember nothing of it for the next ``ttl_s``."""
        now = self._clock()
        with self._lock:
            self._entries.pop(key_hash, None)
            self._forgotten = {k: t for k, t in self._forgotten.items() if t > now}
            self._forgotten[key_hash] = now + self.ttl_s
        for listener in self._on_forget:
            listener(key_hash)

    def on_forget(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(key_hash)`` whenever a key is forgotten (what else remembers a key
        forgets it too)."""
        self._on_forget.append(listener)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._forgotten.clear()


principals = PrincipalCache()
