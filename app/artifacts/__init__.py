"""The artifact store: content-addressed objects (code bundles) in a directory or an S3 prefix.

The default store is ``DATA_DIR/artifacts``; ``STRATUS_ARTIFACTS__STORE_URI=s3://bucket/prefix``
puts objects in S3 instead (that implementation lives in ``app/backends/``, the only place
boto3 is imported, and is loaded on first use).
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from app.settings import Settings

CHUNK = 1024 * 1024
SHA256 = re.compile(r"^[0-9a-f]{64}$")
KEY = re.compile(r"^sha256/[0-9a-f]{2}/[0-9a-f]{64}(\.[a-z0-9.]{1,16})?$")


class ArtifactMissing(Exception):  # noqa: N818 - reads as what happened
    """The store has no object under that key (or URI)."""


class ArtifactUnreadable(Exception):  # noqa: N818 - reads as what happened
    """The store could not be reached or refused access (retrying later may help)."""


def content_key(sha256: str, suffix: str = "") -> str:
    """The key of the object whose bytes hash to ``sha256``."""
    if not SHA256.match(sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256[:80]!r}")
    key = f"sha256/{sha256[:2]}/{sha256}{suffix}"
    if not KEY.match(key):
        raise ValueError(f"not a usable key suffix: {suffix!r}")
    return key


def sha256_of_key(key: str) -> str | None:
    """The digest a content key names (None for anything else)."""
    return key.split("/")[2][:64] if KEY.match(key) else None


@dataclass
class ArtifactStream:
    """An object being read: its bytes in chunks, its size when known, and a close."""

    handle: BinaryIO
    size: int | None

    def chunks(self, chunk: int = CHUNK) -> Iterator[bytes]:
        """The bytes, ``chunk`` at a time; the handle is closed at the end (or on close)."""
        try:
            while data := self.handle.read(chunk):
                yield data
        finally:
            self.handle.close()

    def close(self) -> None:
        self.handle.close()


@runtime_checkable
class ArtifactStore(Protocol):
    """Where objects are kept; every write is content addressed and whole or absent."""

    @property
    def is_s3(self) -> bool: ...

    def put(self, source: Path, sha256: str, suffix: str = "") -> str:
        """Store the bytes of ``source`` (which hash to ``sha256``); their key."""
        ...

    def exists(self, key: str) -> bool: ...

    def open(self, key: str) -> ArtifactStream:
        """The object for reading; ArtifactMissing when absent."""
        ...

    def uri(self, key: str) -> str:
        """Where the object is, as a ``file://`` or ``s3://`` URI."""
        ...

    def key_of(self, uri: str) -> str | None:
        """The key of a URI inside this store (None when it lies elsewhere)."""
        ...


_lock = threading.Lock()
_stores: dict[tuple[str, str], ArtifactStore] = {}


def store_location(settings: Settings) -> str:
    """The configured store: an ``s3://`` prefix or an absolute directory."""
    configured = settings.artifacts.store_uri
    if configured and configured.startswith("s3://"):
        return configured.rstrip("/")
    if configured:
        return str(Path(configured.removeprefix("file://")).resolve())
    return str((settings.data_dir / "artifacts").resolve())


def get_store(settings: Settings) -> ArtifactStore:
    """The store the settings name, built once per process."""
    location = store_location(settings)
    region = settings.backends.sagemaker.region
    with _lock:
        store = _stores.get((location, region))
        if store is None:
            store = _build(location, region)
            _stores[(location, region)] = store
        return store


def _build(location: str, region: str) -> ArtifactStore:
    if location.startswith("s3://"):
        module = importlib.import_module("app.backends.s3_artifacts")
        s3_store: ArtifactStore = module.S3ArtifactStore(location, region=region)
        return s3_store
    from app.artifacts.local import LocalArtifactStore  # noqa: PLC0415 - avoids a cycle

    return LocalArtifactStore(Path(location))


def reset() -> None:
    """Forget built stores (settings changed)."""
    with _lock:
        _stores.clear()


def open_uri(uri: str, settings: Settings) -> ArtifactStream:
    """Read the object at a ``file://`` or ``s3://`` URI; ArtifactMissing when absent."""
    if uri.startswith("s3://"):
        module = importlib.import_module("app.backends.s3_artifacts")
        stream: ArtifactStream = module.open_s3_uri(uri, region=settings.backends.sagemaker.region)
        return stream
    if not uri.startswith("file://"):
        raise ArtifactMissing(f"not a file:// or s3:// URI: {uri[:200]}")
    from app.artifacts.local import open_path  # noqa: PLC0415 - avoids a cycle

    return open_path(Path(uri.removeprefix("file://")))
