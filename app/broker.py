"""Broker reachability, for /readyz and the CLI."""

from __future__ import annotations

from kombu import Connection


def broker_reachable(url: str, timeout: float = 2.0) -> tuple[bool, str]:
    """Whether a connection to the broker can be opened, and why not when it cannot."""
    try:
        with Connection(url, connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=1, timeout=int(max(1, timeout)))
        return True, "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        return False, type(exc).__name__
