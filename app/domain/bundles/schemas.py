"""Code bundle response models, and the upload handed from the HTTP edge to the service."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pydantic import Field

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
    id: uuid.UUID = Field(description="The bundle's id, for a run's `code_bundle_id`.")
    project_id: uuid.UUID = Field(description="The project that owns it.")
    sha256: str = Field(
        description="SHA-256 of the uploaded archive: the same bytes give the same bundle."
    )
    size_bytes: int = Field(description="Size of the archive as uploaded.")
    file_count: int = Field(description="Regular files in it.")
    unpacked_bytes: int = Field(description="Total size of its files.")
    created_by: uuid.UUID | None = Field(description="The key that uploaded it.")
    created_at: datetime = Field(description="When it was uploaded (UTC).")
