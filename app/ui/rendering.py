"""Templates, their filters, and the console's response headers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")

# Everything the console loads comes from Stratus itself; uPlot sizes elements through the
# CSSOM, which 'self' allows, but writes a few inline style attributes, hence 'unsafe-inline'.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
        "form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def when(value: datetime | None) -> str:
    """A timestamp as people read it, in UTC."""
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float | None) -> str:
    """Seconds as '1 h 02 min', '3 min 05 s' or '12.3 s'."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def usd(value: float | None) -> str:
    if value is None:
        return "unpriced"
    return f"${value:,.4f}" if value < 1 else f"${value:,.2f}"


def number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else str(value)


def compact_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


TEMPLATES.env.filters.update(
    when=when, duration=duration, usd=usd, number=number, compact_json=compact_json
)


def secured(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def render(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> Response:
    """A page of the console, with its security headers."""
    settings = request.app.state.settings
    base = {"poll_ms": int(settings.ui.poll_interval_s * 1000)}
    response = TEMPLATES.TemplateResponse(
        request, template, {**base, **context}, status_code=status_code
    )
    return secured(response)


def error_page(request: Request, status: int, title: str, detail: str) -> Response:
    """An error as a page (the console never answers with a bare problem+json)."""
    context = {"status": status, "title": title, "detail": detail, "ui": None}
    return render(request, "error.html", context, status_code=status)
