"""Metric points: (subject, name, step, timestamp, value). The largest table."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.clock import utcnow
from app.db import Base
from app.types import BigIntId, MetricFloat, UTCDateTime


class MetricPoint(Base):
    __tablename__ = "metric_points"
    __table_args__ = (
        # Every read of a subject's points is a range of this index: history pages on
        # (timestamp, id), series and windows on timestamp, latest walks it backwards per name.
        # value rides along, so series, windows and latest values never touch the (interleaved)
        # heap, and a time-bounded read costs the points in range, not the subject's history.
        Index(
            "ix_metric_points_series",
            "subject_id",
            "name",
            "timestamp",
            "id",
            postgresql_include=["value"],
        ),
        # Points arrive roughly in time order, so a BRIN (a few pages for 100 M rows) is enough
        # for the retention purge's time ranges; SQLite gets a plain index.
        Index("ix_metric_points_timestamp", "timestamp", postgresql_using="brin"),
    )

    # No FK to the subject: points are append-only, high volume, and purged by retention.
    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    project_id: Mapped[uuid.UUID] = mapped_column()
    subject_type: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[uuid.UUID] = mapped_column()
    name: Mapped[str] = mapped_column(String(128))
    step: Mapped[int | None] = mapped_column(BigInteger)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime)
    # NULL is NaN (see MetricFloat); aggregates leave out NaN and the infinities.
    value: Mapped[float] = mapped_column(MetricFloat, nullable=True)


class MetricBatchRecord(Base):
    """A client's ``batch_id`` seen for a subject, so a retried batch is stored once."""

    __tablename__ = "metric_batches"
    __table_args__ = (Index("ix_metric_batches_created_at", "created_at"),)

    subject_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    batch_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    accepted: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MetricRetention(Base):
    """How long a project keeps its metric points; no row means forever."""

    __tablename__ = "metric_retention"

    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    days: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class MetricPurge(Base):
    """A subject of a deleted project whose points are still to be deleted.

    Points carry no foreign key, so deleting a project queues its runs and deployments here and
    housekeeping deletes their points in short batches, each a range of the series index.
    """

    __tablename__ = "metric_purges"

    subject_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    project_id: Mapped[uuid.UUID] = mapped_column()
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
