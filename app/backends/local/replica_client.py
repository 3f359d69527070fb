"""Keep-alive HTTP/1.1 connections from an API process's event loop to local replicas.

The invocation path's client. It speaks only what a replica (``serving.py``) answers:
Content-Length framed responses, keep-alive unless ``Connection: close``. Measured on the
recommender, it costs about a tenth of the CPU per request of httpx's async client (0.16 vs
1.3 ms), which on a small host is the difference between serving near the replicas' own rate
and a fraction of it. The threads' path (``Router.invoke``) keeps httpx.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]
MAX_HEAD_BYTES = 64 * 1024


class Unreached(Exception):  # noqa: N818 - a routing signal: "try another replica"
    """The request did not reach a model (refused, reset, or a kept-alive connection that
    the replica had closed), so another replica may take it."""


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


class ReplicaPool:
    """Idle connections by port, reused newest first; at most ``max_connections`` at once."""

    def __init__(self, max_connections: int, timeout_s: float, idle_s: float) -> None:
        self.timeout_s = timeout_s
        self.idle_s = idle_s
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: dict[int, list[tuple[float, Connection]]] = {}

    async def post(self, port: int, path: str, body: bytes, content_type: str) -> Reply:
        """One request; ``Unreached`` when it did not get to the model, TimeoutError late."""
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
            f"Accept: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1")
        async with self._slots:
            reused, conn = await self._connection(port)
            try:
                conn[1].write(head + body)
                async with asyncio.timeout(self.timeout_s):
                    reply, keep = await _read(conn[0])
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                conn[1].close()
                raise Unreached(f"port {port}: {exc!r} ({'reused' if reused else 'new'})") from exc
            except BaseException:
                conn[1].close()
                raise
            if keep:
                self._idle.setdefault(port, []).append((time.monotonic(), conn))
            else:
                conn[1].close()
            return reply

    async def _connection(self, port: int) -> tuple[bool, Connection]:
        idle = self._idle.get(port)
        now = time.monotonic()
        while idle:
            since, conn = idle.pop()
            if now - since < self.idle_s and not conn[0].at_eof():
                return True, conn
            conn[1].close()
        try:
            opened = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2.0)
        except (OSError, TimeoutError) as exc:
            raise Unreached(f"port {port}: {exc!r}") from exc
        return False, opened

    def close(self) -> None:
        """Close every idle connection."""
        for conns in self._idle.values():
            for _, (_, writer) in conns:
                writer.close()
        self._idle.clear()


async def _read(reader: asyncio.StreamReader) -> tuple[Reply, bool]:
    """A response and whether its connection may be reused."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError as exc:
        raise ConnectionError("response head too large") from exc
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    try:
        status = int(rest[:3])
    except ValueError as exc:
        raise ConnectionError(f"not an HTTP status line: {lines[0][:80]!r}") from exc
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    length = headers.get("content-length")
    if length is None:  # framed by the end of the connection
        return Reply(status, headers, await reader.read()), False
    if not length.isdigit():
        raise ConnectionError(f"bad Content-Length {length[:40]!r}")
    return Reply(status, headers, await reader.readexactly(int(length))), keep
