"""Small on-disk primitives shared by the local backend's processes.

Every piece of local-backend state lives in files under the work dir, because the process that
submits a job, the one that polls it and the API process that invokes an endpoint may all be
different. Writers publish whole files (write a temporary, then rename), so a reader never
sees half a document.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# A single log line longer than this is cut (a progress bar without newlines, binary output).
MAX_LINE_BYTES = 64 * 1024


def now() -> datetime:
    """Now, in UTC, timezone-aware."""
    return datetime.now(UTC)


def to_iso(moment: datetime) -> str:
    """A timestamp as stored in state files."""
    return moment.astimezone(UTC).isoformat()


def from_iso(text: object) -> datetime | None:
    """A timestamp read back from a state file (None when absent or malformed)."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Replace ``path`` with ``data`` as JSON, atomically."""
    tmp = _temporary(path)
    tmp.write_text(json.dumps(data, separators=(",", ":"), default=str))
    os.replace(tmp, path)


def publish_json(path: Path, data: Mapping[str, Any]) -> bool:
    """Create ``path`` with ``data`` unless it exists; True when this call wrote it."""
    tmp = _temporary(path)
    tmp.write_text(json.dumps(data, separators=(",", ":"), default=str))
    try:
        # A hard link fails if the target exists, so the first writer wins and later ones
        # (a poller racing the supervisor, say) cannot overwrite a final status.
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when it is missing or not an object."""
    try:
        data = json.loads(path.read_bytes())
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def append_line(path: Path, line: str) -> None:
    """Append one line with a single ``write`` (O_APPEND keeps concurrent writers' lines whole)."""
    append_lines(path, [line])


def append_lines(path: Path, lines: list[str]) -> None:
    """Append lines with a single ``write``, so another writer's lines never land among them."""
    data = "".join(line.rstrip("\n") + "\n" for line in lines).encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        while data:  # a regular file takes it in one go; a short write goes on from there
            data = data[os.write(fd, data) :]
    finally:
        os.close(fd)


def read_lines(
    path: Path, offset: int, limit: int, max_bytes: int = 4 * 1024 * 1024
) -> tuple[list[str], int]:
    """Up to ``limit`` complete lines from byte ``offset``, and the offset after them."""
    # A trailing line without its newline is still being written, so it is left for later.
    lines: list[str] = []
    start = offset
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            while len(lines) < limit and offset - start < max_bytes:
                raw = handle.readline(MAX_LINE_BYTES)
                # An over-long line is served in pieces rather than blocking the reader.
                if not raw.endswith(b"\n") and len(raw) < MAX_LINE_BYTES:
                    break
                offset += len(raw)
                lines.append(raw.rstrip(b"\n").decode("utf-8", errors="replace"))
    except FileNotFoundError:
        pass
    return lines, offset


def parse_cursor(cursor: str | None) -> int:
    """The byte offset a cursor stands for; a cursor is an offset in decimal."""
    if cursor is None or cursor == "":
        return 0
    if not cursor.isdigit() or len(cursor) > 18:
        raise ValueError(f"not a cursor of this backend: {cursor[:40]!r}")
    return int(cursor)


# --- locks ------------------------------------------------------------------------------------


def acquire_lock(path: Path, wait_s: float) -> int | None:
    """Take an exclusive lock on ``path`` for this process's life; None if another holds it."""
    # The descriptor is not inherited by child processes, so only this process holds the lock,
    # and the kernel releases it the moment the process exits, however it exits.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            # A prober holds a shared lock for an instant; retrying rides that out.
            if time.monotonic() >= deadline:
                os.close(fd)
                return None
            time.sleep(0.05)


def lock_held(path: Path) -> bool:
    """Whether a live process holds the lock on ``path``: liveness that pid reuse cannot fool."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@contextlib.contextmanager
def short_lock(path: Path) -> Iterator[None]:
    """Serialize a few quick steps across processes (blocking)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
