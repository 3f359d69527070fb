"""Server-sent events: the wire format and the bounded polling loop every stream shares.

A stream polls in short, separate transactions (no session is held between polls), so it
works the same on SQLite and PostgreSQL; it sends a comment line when quiet so proxies keep
the connection, and ends after a while so a client (EventSource does this by itself)
reconnects with ``Last-Event-ID`` and loses nothing.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool

from app.settings import ObservabilitySettings

MEDIA_TYPE = "text/event-stream"
# Sent with every stream: no caching, and no buffering by nginx-like proxies.
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}
RECONNECT_MS = 2000
_BREAKS = re.compile(r"\r\n|\r|\n")


def frame(data: str | list[str], event_id: str | None = None, event: str | None = None) -> bytes:
    """One event: optional ``id:`` and ``event:`` lines, one ``data:`` line per text line."""
    lines = []
    if event_id is not None:
        lines.append(f"id: {_BREAKS.sub(' ', event_id)}")
    if event is not None:
        lines.append(f"event: {event}")
    texts = [data] if isinstance(data, str) else data
    for text in texts:
        lines.extend(f"data: {part}" for part in _BREAKS.split(text))
    return ("\n".join(lines) + "\n\n").encode()


@dataclass
class Batch:
    """What one poll found: frames to send, and whether the stream is over."""

    frames: list[bytes] = field(default_factory=list)
    done: bool = False
    full: bool = False  # more is waiting: poll again at once


async def pump(poll: Callable[[], Batch], config: ObservabilitySettings) -> AsyncIterator[bytes]:
    """Call ``poll`` (in the threadpool) until it says done or the stream's time is up."""
    yield f"retry: {RECONNECT_MS}\n\n".encode()
    deadline = time.monotonic() + config.stream_max_s
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        batch = await run_in_threadpool(poll)
        for chunk in batch.frames:
            yield chunk
        if batch.done:
            return
        now = time.monotonic()
        if batch.frames:
            quiet_since = now
        elif now - quiet_since >= config.stream_keepalive_s:
            yield b": keep-alive\n\n"
            quiet_since = now
        if not batch.full:
            await asyncio.sleep(config.stream_poll_s)
