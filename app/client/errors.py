"""The one exception the client raises: what the API said went wrong, or that it was unreachable."""

from __future__ import annotations

from typing import Any


class StratusError(Exception):
    """A problem+json answer (``status`` >= 400), or ``status`` 0 when no answer came at all.

    ``code`` is the API's stable machine code (``not_found``, ``invalid_transition`` ...);
    ``detail`` says what happened in words.
    """

    def __init__(
        self, status: int, code: str, detail: str, body: dict[str, Any] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.body = body or {}

    def __str__(self) -> str:
        where = f"HTTP {self.status}, " if self.status else ""
        return f"{self.detail} ({where}{self.code})"

    def __repr__(self) -> str:
        return f"StratusError(status={self.status}, code={self.code!r}, detail={self.detail!r})"
