"""Checks on a code bundle (a gzip'd tar), read as a stream so a gzip bomb cannot fill memory.

The same checks run on upload and again when a backend unpacks a bundle: no absolute paths,
no ``..``, no links that leave the archive's root, no devices or fifos, at most so many
members and so many unpacked bytes (counted from the headers, and bounded while
decompressing). Links inside the archive are allowed; the unpacking uses tarfile's ``data``
filter as a second line.
"""

from __future__ import annotations

import gzip
import posixpath
import re
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

# Room per member for tar headers, long-name and pax records on top of the file data.
HEADER_ALLOWANCE = 16 * 1024
# The most header bytes (pax and long-name records) one member may have: tarfile holds them
# in memory whole, so a few KB of gzip must not become gigabytes of "header".
HEADER_MAX = 1024 * 1024
READ_AHEAD = 64 * 1024  # tarfile reads its stream in records of 10 KiB, ahead of the member
WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


class ArchiveRefused(ValueError):
    """The archive breaks a rule; ``member`` names the offending member when there is one."""

    def __init__(self, message: str, member: str | None = None) -> None:
        super().__init__(message)
        self.member = member


@dataclass(frozen=True)
class BundleLimits:
    max_files: int
    max_unpacked_bytes: int


@dataclass
class Inspection:
    """What a checked archive holds: its regular files (normalised paths) and their size."""

    files: list[str] = field(default_factory=list)
    members: int = 0
    unpacked_bytes: int = 0


def normalise(name: str) -> str:
    """A member path without ``./`` or empty segments; ArchiveRefused for absolute or ``..``."""
    if name.startswith(("/", "\\")) or WINDOWS_DRIVE.match(name):
        raise ArchiveRefused(f"member {name!r} has an absolute path", name)
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveRefused(f"member {name!r} has a '..' component", name)
    return "/".join(parts)


class _Bounded:
    """A reader of inflated bytes that refuses to go past ``limit`` in total, or past what the
    last member's data and ``HEADER_MAX`` allow before the next member (tarfile holds a
    member's pax and long-name records in memory whole, so their size is capped here)."""

    def __init__(self, raw: gzip.GzipFile, limit: int) -> None:
        self.raw = raw
        self.limit = limit
        self.seen = 0
        self.budget = HEADER_MAX + READ_AHEAD
        self.member: str | None = None

    def started(self, member: tarfile.TarInfo) -> None:
        """``member``'s header was read: its data and the next member's headers may follow."""
        self.member = member.name
        padded = -(-max(member.size, 0) // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
        self.budget = self.seen + padded + HEADER_MAX + READ_AHEAD

    def read(self, size: int = -1) -> bytes:
        room = min(self.limit, self.budget) - self.seen + 1
        size = room if size < 0 else min(size, room)
        data = self.raw.read(size)
        self.seen += len(data)
        if self.seen > self.limit:
            raise ArchiveRefused(
                f"the archive unpacks to more than {self.limit} bytes (after member "
                f"{self.member!r})",
                self.member,
            )
        if self.seen > self.budget:
            where = f"after member {self.member!r}" if self.member else "at the start"
            raise ArchiveRefused(
                f"the member headers {where} are larger than {HEADER_MAX} bytes", self.member
            )
        return data


def _check_link(member: tarfile.TarInfo, path: str) -> None:
    target = member.linkname
    if target.startswith(("/", "\\")) or WINDOWS_DRIVE.match(target):
        raise ArchiveRefused(f"link {member.name!r} points at the absolute path {target!r}", path)
    # A symlink resolves from its own directory, a hard link from the archive's root.
    base = posixpath.dirname(path) if member.issym() else ""
    resolved = posixpath.normpath(posixpath.join(base, target))
    if resolved == ".." or resolved.startswith("../"):
        raise ArchiveRefused(f"link {member.name!r} points outside the archive ({target!r})", path)


def _check_member(member: tarfile.TarInfo, inspection: Inspection, limits: BundleLimits) -> str:
    inspection.members += 1
    if inspection.members > limits.max_files:
        raise ArchiveRefused(
            f"the archive has more than {limits.max_files} members (at {member.name!r})",
            member.name,
        )
    path = normalise(member.name)
    if member.issym() or member.islnk():
        _check_link(member, path)
    elif member.isdev():
        raise ArchiveRefused(f"member {member.name!r} is a device or fifo", member.name)
    elif member.isreg():
        inspection.unpacked_bytes += member.size
        if inspection.unpacked_bytes > limits.max_unpacked_bytes:
            raise ArchiveRefused(
                f"the archive unpacks to more than {limits.max_unpacked_bytes} bytes "
                f"(at member {member.name!r})",
                member.name,
            )
        inspection.files.append(path)
    elif not member.isdir():
        raise ArchiveRefused(
            f"member {member.name!r} is not a file, directory or link", member.name
        )
    return path


def _walk(fileobj: IO[bytes], limits: BundleLimits, destination: Path | None) -> Inspection:
    inspection = Inspection()
    # Decompressed here, not by tarfile, so the bound counts inflated bytes.
    inflated = gzip.GzipFile(fileobj=fileobj, mode="rb")
    bounded = _Bounded(inflated, limits.max_unpacked_bytes + limits.max_files * HEADER_ALLOWANCE)
    try:
        with tarfile.open(fileobj=bounded, mode="r|") as archive:  # type: ignore[call-overload]
            for member in archive:
                bounded.started(member)
                _check_member(member, inspection, limits)
                if destination is not None:
                    archive.extract(member, destination, filter="data")
    except ArchiveRefused:
        raise
    except tarfile.FilterError as exc:
        name = getattr(getattr(exc, "tarinfo", None), "name", None)
        raise ArchiveRefused(f"member {name!r} cannot be unpacked safely: {exc}", name) from exc
    except (tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise ArchiveRefused(f"not a gzip'd tar archive ({exc})") from exc
    finally:
        inflated.close()
    if not inspection.files:
        raise ArchiveRefused("the archive holds no regular files")
    return inspection


def inspect_archive(fileobj: IO[bytes], limits: BundleLimits) -> Inspection:
    """Check every member of a gzip'd tar; ArchiveRefused naming the first bad one."""
    return _walk(fileobj, limits, None)


def extract_archive(fileobj: IO[bytes], destination: Path, limits: BundleLimits) -> Inspection:
    """Check and unpack a gzip'd tar into ``destination`` (which the caller discards on error)."""
    destination.mkdir(parents=True, exist_ok=True)
    return _walk(fileobj, limits, destination)
