"""Metric points: (subject, name, step, timestamp, value). The largest table."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Float, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.types import BigIntId, UTCDateTime


class MetricPoint(Base):
    __tablename__ = "metric_points"
    __table_args__ = (Index("ix_metric_points_subject", "subject_id", "name", "id"),)

    # No FK to the subject: points are append-only, high volume, and purged by retention.
    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    project_id: Mapped[uuid.UUID] = mapped_column()
    subject_type: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[uuid.UUID] = mapped_column()
    name: Mapped[str] = mapped_column(String(128))
    step: Mapped[int | None] = mapped_column(BigInteger)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime)
    value: Mapped[float] = mapped_column(Float)
