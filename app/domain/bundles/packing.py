"""Pack a directory into a gzip'd tar for upload as a code bundle: the one packer of the
client, the CLI and ``stratus demo`` (standard library only).

The archive is deterministic: the same files give the same bytes (sorted members, zeroed times
and owners, normalised modes), so packing an unchanged directory again gives the same bundle.
Version control, virtualenvs and caches are left out, and so is anything a ``.stratusignore``
(gitignore-like patterns) names. A symlink that stays inside the directory is kept as a link;
one that leads out of it is left out (and listed), so packing never picks up a file from
elsewhere on the machine.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

IGNORE_FILE = ".stratusignore"
ALWAYS_SKIPPED_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "__pycache__",
        ".venv",
        "venv",
        ".tox",
        ".nox",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".ipynb_checkpoints",
        "node_modules",
        ".idea",
        ".vscode",
    }
)
ALWAYS_SKIPPED_FILES = ("*.pyc", "*.pyo", ".DS_Store")


@dataclass(frozen=True)
class Rule:
    pattern: str
    negate: bool
    dir_only: bool
    anchored: bool

    def matches(self, rel: str, is_dir: bool) -> bool:
        if self.dir_only and not is_dir:
            return False
        if self.anchored:
            return fnmatch.fnmatchcase(rel, self.pattern)
        name = rel.rsplit("/", 1)[-1]
        return fnmatch.fnmatchcase(name, self.pattern) or fnmatch.fnmatchcase(rel, self.pattern)


def parse_ignore(text: str) -> list[Rule]:
    """gitignore-like lines: ``#`` comments, ``!`` re-includes, ``dir/`` only directories,
    a ``/`` inside a pattern anchors it at the directory packed."""
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        line = line[1:] if negate else line
        dir_only = line.endswith("/")
        line = line.rstrip("/")
        anchored = "/" in line
        line = line.lstrip("/")
        if line:
            rules.append(Rule(line, negate, dir_only, anchored))
    return rules


def ignored(rules: list[Rule], rel: str, is_dir: bool) -> bool:
    """The last rule that matches decides, as in gitignore."""
    verdict = False
    for rule in rules:
        if rule.matches(rel, is_dir):
            verdict = not rule.negate
    return verdict


@dataclass
class Packed:
    """The archive written, and what went into it."""

    sha256: str
    size_bytes: int
    files: list[str] = field(default_factory=list)
    skipped_links: list[str] = field(default_factory=list)


def _is_virtualenv(path: Path) -> bool:
    return (path / "pyvenv.cfg").is_file()


def walk(root: Path, rules: list[Rule]) -> Iterator[tuple[str, Path]]:
    """(archive name, path) of every file to pack, in a stable order."""
    for current, dirs, files in os.walk(root, followlinks=False):
        base = Path(current)
        rel_base = base.relative_to(root).as_posix()
        prefix = "" if rel_base == "." else f"{rel_base}/"
        kept_dirs = []
        for name in sorted(dirs):
            rel = prefix + name
            full = base / name
            if name in ALWAYS_SKIPPED_DIRS or _is_virtualenv(full) or ignored(rules, rel, True):
                continue
            kept_dirs.append(name)
        dirs[:] = kept_dirs
        for name in sorted(files):
            rel = prefix + name
            if any(fnmatch.fnmatchcase(name, p) for p in ALWAYS_SKIPPED_FILES):
                continue
            if ignored(rules, rel, False):
                continue
            yield rel, base / name
        # Symlinked directories appear in ``dirs`` but are not walked: pack them as links.
        for name in kept_dirs:
            if (base / name).is_symlink():
                yield prefix + name, base / name


def _member(name: str, path: Path, root: Path) -> tarfile.TarInfo | None:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(path)
        resolved = (path.parent / target).resolve()
        if os.path.isabs(target) or not resolved.is_relative_to(root.resolve()):
            return None  # a link out of the directory: its target is not in the bundle
        info.type = tarfile.SYMTYPE
        info.linkname = target
        info.mode = 0o777
        return info
    if not stat.S_ISREG(st.st_mode):
        return None
    info.size = st.st_size
    info.mode = 0o755 if st.st_mode & stat.S_IXUSR else 0o644
    return info


class _Hashing(io.RawIOBase):
    """Counts and hashes what is written through it."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.digest.update(data)
        self.size += len(data)
        self.out.write(data)
        return len(data)


def pack_directory_to(root: Path, out: IO[bytes]) -> Packed:
    """Write ``root``'s files as a deterministic gzip'd tar to ``out``."""
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a directory")
    ignore_file = root / IGNORE_FILE
    rules = parse_ignore(ignore_file.read_text()) if ignore_file.is_file() else []
    sink = _Hashing(out)
    packed = Packed(sha256="", size_bytes=0)
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=sink, mtime=0, compresslevel=6) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        for name, path in walk(root, rules):
            info = _member(name, path, root)
            if info is None:
                packed.skipped_links.append(name)
                continue
            if info.isreg():
                with path.open("rb") as data:
                    archive.addfile(info, data)
            else:
                archive.addfile(info)
            packed.files.append(name)
    packed.sha256, packed.size_bytes = sink.digest.hexdigest(), sink.size
    return packed


def pack_directory(root: Path) -> bytes:
    """The gzip'd tar of ``root``, in memory (small directories, such as the examples)."""
    buffer = io.BytesIO()
    pack_directory_to(root, buffer)
    return buffer.getvalue()
