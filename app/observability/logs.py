"""JSON logs (STRATUS_OBSERVABILITY__JSON_LOGS): one object a line with the request id and
principal id; secrets that slipped into a message are masked before it is written."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

from app.observability import context

# API keys, webhook secrets, bearer credentials and passwords in URLs.
_SECRETS = re.compile(
    r"(sk_[A-Za-z0-9_-]{8,}|whsec_[A-Za-z0-9+/=]{8,}|(?i:bearer)\s+\S+|(?<=://)[^/\s:@]+:[^/\s@]+(?=@))"
)


def redact(text: str) -> str:
    return _SECRETS.sub("[redacted]", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
            "request_id": context.request_id.get(),
            "principal_id": context.principal_id.get(),
        }
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(level: str, json_logs: bool) -> None:
    """Set the root logger's level, and its format to JSON lines when asked."""
    logging.basicConfig(level=level)
    if not json_logs:
        return
    use_json(logging.getLogger())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        use_json(logging.getLogger(name))


def use_json(logger: logging.Logger) -> None:
    """Write ``logger``'s own handlers' records as JSON lines."""
    formatter = JsonFormatter()
    for handler in logger.handlers:
        handler.setFormatter(formatter)
