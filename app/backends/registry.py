"""Which compute backend serves a name such as ``"local"`` or ``"sagemaker"``."""

from __future__ import annotations

from app.backends.base import Backend

# No backend is wired in this release: work waits in the outbox until one is.
_BACKENDS: dict[str, Backend] = {}


def get_backend(name: str) -> Backend | None:
    """The backend registered under ``name``, or None when none is configured."""
    return _BACKENDS.get(name)


def unavailable_reason(name: str, waiting: str) -> str:
    """The words recorded on an object whose work waits for a backend."""
    return f"no compute backend is configured for {name!r} yet; {waiting}"
