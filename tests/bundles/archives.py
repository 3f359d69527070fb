"""Build gzip'd tars in memory, good and bad, for bundle tests."""

from __future__ import annotations

import gzip as gzip_module
import io
import tarfile

TRAIN = b"print('loss=0.5')\n"


def entry(name: str, data: bytes = b"", **fields: object) -> tuple[tarfile.TarInfo, bytes | None]:
    """A member: a regular file by default; pass ``type``/``linkname`` for others."""
    info = tarfile.TarInfo(name)
    for key, value in fields.items():
        setattr(info, key, value)
    if info.isreg():
        info.size = len(data)
        return info, data
    return info, None


def targz(*members: tuple[tarfile.TarInfo, bytes | None], gzip: bool = True) -> bytes:
    """The archive of ``members``, in order (gzip'd unless told otherwise); the same members
    always give the same bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return gzip_module.compress(buffer.getvalue(), mtime=0) if gzip else buffer.getvalue()


def code_bundle(script: bytes = TRAIN, name: str = "train.py") -> bytes:
    """A tiny bundle as ``tar czf - -C src .`` makes it."""
    return targz(
        entry("./", type=tarfile.DIRTYPE),
        entry(f"./{name}", script),
        entry("./lib/", type=tarfile.DIRTYPE),
        entry("./lib/util.py", b"X = 1\n"),
    )
