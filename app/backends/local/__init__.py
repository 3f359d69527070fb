"""The local backend: trains and serves with processes on this host (see ``backend.py``).

``LocalBackend`` is imported on first use, so the helper processes started as
``python -m app.backends.local.<module>`` do not pay for the HTTP client and settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.backends.local.backend import LocalBackend

__all__ = ["LocalBackend"]


def __getattr__(name: str) -> object:
    if name == "LocalBackend":
        from app.backends.local.backend import LocalBackend  # noqa: PLC0415 - lazy on purpose

        return LocalBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
