"""Pack a directory as a code bundle: the same files always give the same bytes (and digest).

Members are sorted, with zeroed times and owners and normalised modes; ``.git``,
``__pycache__``, ``.venv`` and ``*.pyc`` are left out. Symlinks that stay inside the directory
are kept as links; one that leads out of it is refused, so packing never picks up a file
from elsewhere on the machine. Standard library only: clients reuse this.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path
from typing import BinaryIO

SKIPPED_DIRS = frozenset({".git", "__pycache__", ".venv", ".mypy_cache", ".pytest_cache"})
SKIPPED_SUFFIXES = (".pyc",)


def _members(root: Path) -> list[Path]:
    found: list[Path] = []
    for current, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS]
        base = Path(current)
        for name in dirs:
            found.append(base / name)
        found.extend(base / name for name in files if not name.endswith(SKIPPED_SUFFIXES))
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _info(root: Path, path: Path) -> tarfile.TarInfo:
    info = tarfile.TarInfo(path.relative_to(root).as_posix())
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if path.is_symlink():
        target = os.readlink(path)
        if not path.resolve().is_relative_to(root.resolve()):
            raise ValueError(f"{path} links outside {root} (to {target}); pack its target instead")
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
    elif path.is_dir():
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    elif path.is_file():
        executable = os.access(path, os.X_OK)
        info.size = path.stat().st_size
        info.mode = 0o755 if executable else 0o644
    else:
        raise ValueError(f"{path} is not a file, directory or link")
    return info


def pack_directory_to(path: Path, out: BinaryIO) -> None:
    """Write the gzip'd tar of ``path`` to ``out``."""
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"{root} is not a directory")
    # mtime=0 and no file name in the gzip header: the bytes depend on the content alone.
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        for member in _members(root):
            info = _info(root, member)
            if info.isreg():
                with member.open("rb") as handle:
                    archive.addfile(info, handle)
            else:
                archive.addfile(info)


def pack_directory(path: Path) -> bytes:
    """The gzip'd tar of ``path``, ready to upload as a code bundle."""
    buffer = io.BytesIO()
    pack_directory_to(path, buffer)
    return buffer.getvalue()
