"""Optimizer decisions: one row per deployment per pass, with everything that explains it."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.clock import utcnow
from app.db import Base
from app.ids import uuid7
from app.types import JSONType, UTCDateTime


class OptimizerDecision(Base):
    __tablename__ = "optimizer_decisions"
    __table_args__ = (
        # One decision per deployment per window: a re-run of a pass changes nothing.
        UniqueConstraint("deployment_id", "window_end"),
        Index("ix_optimizer_decisions_deployment_id_id", "deployment_id", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
    deployment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE")
    )
    project_id: Mapped[uuid.UUID] = mapped_column()
    window_start: Mapped[datetime] = mapped_column(UTCDateTime)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime)
    mode: Mapped[str] = mapped_column(String(16))  # model | probe | fallback | no_data
    action: Mapped[str] = mapped_column(String(16))  # scale_out | scale_in | hold
    previous_instances: Mapped[int] = mapped_column(Integer)
    desired_instances: Mapped[int] = mapped_column(Integer)
    applied: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(Text)
    # The full decision (fit, candidate table, inputs) and the policy it was made under.
    details: Mapped[dict[str, Any]] = mapped_column(JSONType)
    policy: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
