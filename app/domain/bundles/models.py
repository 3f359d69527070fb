"""Code bundles: a project's content-addressed tarballs of training code."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.clock import utcnow
from app.db import Base
from app.ids import uuid7
from app.types import JSONType, UTCDateTime


class CodeBundle(Base):
    __tablename__ = "code_bundles"
    __table_args__ = (
        UniqueConstraint("project_id", "sha256"),
        Index("ix_code_bundles_project_id_id", "project_id", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    file_count: Mapped[int] = mapped_column(Integer)
    unpacked_bytes: Mapped[int] = mapped_column(BigInteger)
    # Regular-file member paths, normalised: create-time checks read it, not the archive.
    # Deferred: up to BUNDLE_MAX_FILES paths, which lists and reads never need.
    manifest: Mapped[list[str]] = mapped_column(JSONType, deferred=True)
    created_by: Mapped[uuid.UUID | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
