"""Code bundle response models, and the upload handed from the HTTP edge to the service."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from app.domain.schemas import ReadModel

GZIP_MEDIA_TYPES = frozenset({"application/gzip", "application/x-gzip"})
BUNDLE_SUFFIX = ".tar.gz"


@dataclass(frozen=True)
class Upload:
    """A request body spooled to a temporary file, hashed and counted on the way."""

    path: Path
    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class StoredBundle:
    """A checked archive whose bytes are in the artifact store."""

    sha256: str
    size_bytes: int
    file_count: int
    unpacked_bytes: int
    manifest: list[str]


class BundleRead(ReadModel):
    id: uuid.UUID
    project_id: uuid.UUID
    sha256: str
    size_bytes: int
    file_count: int
    unpacked_bytes: int
    created_by: uuid.UUID | None
    created_at: datetime
