"""Host paths are an admin's tool: a path a user names must lie, symlinks resolved, under a
configured root, and never inside Stratus's own data or work directory."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from app.settings import Settings

ROOTS_SETTING = "STRATUS_BACKENDS__LOCAL__HOST_ROOTS"
BUNDLE_HINT = "code can be sent as a code bundle instead"
NAME_MAX, PATH_MAX = 255, 4095  # Linux's limits on one name and on a whole path


class HostPathError(ValueError):
    """A host path that may not be used; the message says why, without naming the field."""


def _real(path: Path) -> Path:
    # realpath, not resolve(strict=True): an output location need not exist yet.
    return Path(os.path.realpath(path))


@dataclass(frozen=True)
class HostRoots:
    """Where user-named host paths may point: ``roots``, minus the ``reserved`` directories
    (unless a root was configured inside one of them)."""

    roots: tuple[Path, ...]
    reserved: tuple[Path, ...] = ()

    @classmethod
    def of(cls, roots: Iterable[Path], reserved: Iterable[Path] = ()) -> HostRoots:
        return cls(tuple(_real(r) for r in roots), tuple(_real(r) for r in reserved))

    def with_root(self, root: Path) -> HostRoots:
        """These roots and one more (e.g. a backend's own job directory, for its artifacts)."""
        return HostRoots((*self.roots, _real(root)), self.reserved)

    def admits(self, real: Path) -> bool:
        """True when the (already resolved) path lies under a root and outside reserved dirs."""
        for root in self.roots:
            if not real.is_relative_to(root):
                continue
            blocked = [r for r in self.reserved if real.is_relative_to(r)]
            # A reserved directory blocks what lies in it, unless the root itself lies there.
            if all(root.is_relative_to(r) for r in blocked):
                return True
        return False

    def check(self, value: str) -> Path:
        """The resolved path of ``value`` (``file://`` URI or absolute path) if admitted."""
        real = _real(parse_host_path(value))
        if not self.roots:
            raise HostPathError(
                f"host paths are refused: none is allowed until an admin sets {ROOTS_SETTING}; "
                f"{BUNDLE_HINT}"
            )
        if not self.admits(real):
            raise HostPathError(
                f"{value!r} is not under an allowed host root (host paths must lie under "
                f"{ROOTS_SETTING}, symlinks resolved, and outside Stratus's own directories); "
                f"{BUNDLE_HINT}"
            )
        return real


def is_s3(value: str) -> bool:
    return value.startswith("s3://")


def parse_host_path(value: str) -> Path:
    """The absolute path of a ``file://`` URI or a plain absolute path, unresolved."""
    if any(ord(ch) < 32 for ch in value):
        raise HostPathError("must not contain control characters")
    parsed = urlparse(value)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise HostPathError(f"file:// URIs name this host only, not {parsed.netloc!r}")
        raw = unquote(parsed.path)
    elif parsed.scheme and len(parsed.scheme) > 1:  # a one-letter scheme is a Windows drive
        raise HostPathError(f"expected a host path, not a {parsed.scheme}:// URI")
    else:
        raw = value
    if raw.startswith("~") or not os.path.isabs(raw):
        raise HostPathError(
            f"{value!r} is relative: give an absolute path under a host root ({ROOTS_SETTING}), "
            f"or {BUNDLE_HINT}"
        )
    if ".." in Path(raw).parts:
        raise HostPathError(f"{value!r} must not contain '..' segments")
    if len(raw.encode()) > PATH_MAX or any(len(p.encode()) > NAME_MAX for p in Path(raw).parts):
        raise HostPathError(
            f"paths are at most {PATH_MAX} bytes, each name in them at most {NAME_MAX}"
        )
    return Path(raw)


def settings_roots(settings: Settings) -> HostRoots:
    """The configured roots; the data dir and the local backend's work dir are reserved."""
    local = settings.backends.local
    data_dir = settings.data_dir.expanduser().resolve()
    work_dir = (local.work_dir or data_dir / "local").expanduser().resolve()
    return HostRoots.of(local.host_roots, (data_dir, work_dir))
