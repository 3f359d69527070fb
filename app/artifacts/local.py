"""The artifact store in a local directory (the default, ``DATA_DIR/artifacts``)."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import uuid
from pathlib import Path

from app.artifacts import CHUNK, KEY, ArtifactMissing, ArtifactStream, content_key


def open_path(path: Path) -> ArtifactStream:
    """A regular file for reading, with its size; ArtifactMissing otherwise."""
    try:
        handle = path.open("rb")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
        raise ArtifactMissing(f"no file at {path}") from exc
    info = os.fstat(handle.fileno())
    if not stat.S_ISREG(info.st_mode):
        handle.close()
        raise ArtifactMissing(f"{path} is not a regular file")
    return ArtifactStream(handle, info.st_size)


class LocalArtifactStore:
    """Objects as files under ``root``: private to this user, published with one rename."""

    is_s3 = False

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)

    def path(self, key: str) -> Path:
        """The file of ``key`` (keys are checked, so none can point outside the root)."""
        if not KEY.match(key):
            raise ValueError(f"not a key of this store: {key[:120]!r}")
        return self.root / key

    def put(self, source: Path, sha256: str, suffix: str = "") -> str:
        """Copy ``source`` in under its content key; an object already there is kept."""
        key = content_key(sha256, suffix)
        target = self.path(key)
        if target.is_file():
            return key
        for directory in reversed(target.relative_to(self.root).parents[:-1]):
            (self.root / directory).mkdir(mode=0o700, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out, source.open("rb") as src:
                shutil.copyfileobj(src, out, CHUNK)
                out.flush()
                os.fsync(out.fileno())
            # Same bytes, same name: a concurrent put of the same object replaces it with itself.
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        return key

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def open(self, key: str) -> ArtifactStream:
        return open_path(self.path(key))

    def uri(self, key: str) -> str:
        return self.path(key).as_uri()

    def key_of(self, uri: str) -> str | None:
        if not uri.startswith("file://"):
            return None
        path = Path(os.path.realpath(uri.removeprefix("file://")))
        if not path.is_relative_to(self.root):
            return None
        key = path.relative_to(self.root).as_posix()
        return key if KEY.match(key) else None
