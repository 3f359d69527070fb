"""Every query the optimizer's service glue makes."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain.deployments.models import Deployment
from app.domain.deployments.states import DeploymentStatus
from app.domain.metrics.aggregates import FINITE
from app.domain.metrics.models import MetricPoint
from app.domain.optimizer.models import OptimizerDecision
from app.domain.pagination import PageRequest, paginate
from app.domain.runs.models import TrainingRun


def optimized_deployments(session: Session, limit: int) -> Sequence[uuid.UUID]:
    """In-service deployments whose scaling policy turns the optimizer on."""
    return session.scalars(
        select(Deployment.id)
        .where(
            Deployment.status == DeploymentStatus.IN_SERVICE,
            Deployment.scaling_policy["optimizer_enabled"].as_boolean().is_(True),
        )
        .order_by(Deployment.id)
        .limit(limit)
    ).all()


def window_points(
    session: Session,
    deployment_id: uuid.UUID,
    names: Sequence[str],
    since: datetime,
    until: datetime,
) -> Sequence[tuple[str, datetime, float]]:
    """(name, timestamp, value) of a deployment's metrics in ``[since, until)``, oldest first."""
    rows = session.execute(
        select(MetricPoint.name, MetricPoint.timestamp, MetricPoint.value)
        .where(
            # subject_id alone (ids are unique across subjects): an index-only range scan.
            MetricPoint.subject_id == deployment_id,
            MetricPoint.name.in_(names),
            MetricPoint.timestamp >= since,
            MetricPoint.timestamp < until,
            *FINITE,
        )
        .order_by(MetricPoint.timestamp)
    ).all()
    return [(name, ts, value) for name, ts, value in rows]


def exists(session: Session, deployment_id: uuid.UUID, window_end: datetime) -> bool:
    return (
        session.scalar(
            select(OptimizerDecision.id).where(
                OptimizerDecision.deployment_id == deployment_id,
                OptimizerDecision.window_end == window_end,
            )
        )
        is not None
    )


@dataclass(frozen=True, slots=True)
class PassHistory:
    """What a pass needs from a deployment's earlier decisions."""

    last_scale_out: datetime | None  # when the optimizer last applied a scale-out
    last_scale_in: datetime | None  # ... and a scale-in
    latency_target_ms: float | None  # the target the latest decision worked to, if recorded


def pass_history(session: Session, deployment_id: uuid.UUID) -> PassHistory:
    """The deployment's last applied scale-out and scale-in and its latest target, in one
    round trip (three scalar subqueries, each an index walk from the newest decision)."""

    def newest(column: Any, *where: Any) -> Any:
        return (
            select(column)
            .where(OptimizerDecision.deployment_id == deployment_id, *where)
            .order_by(OptimizerDecision.id.desc())
            .limit(1)
            .scalar_subquery()
        )

    def applied(action: str) -> Any:
        return newest(
            OptimizerDecision.window_end,
            OptimizerDecision.action == action,
            OptimizerDecision.applied.is_(True),
        )

    out, into, details = session.execute(
        select(applied("scale_out"), applied("scale_in"), newest(OptimizerDecision.details))
    ).one()
    inputs = details.get("inputs") if isinstance(details, dict) else None
    value = inputs.get("latency_target_ms") if isinstance(inputs, dict) else None
    target = float(value) if isinstance(value, int | float) else None
    return PassHistory(out, into, target)


def list_for_deployment(
    session: Session, deployment_id: uuid.UUID, page: PageRequest
) -> tuple[Sequence[OptimizerDecision], str | None]:
    stmt = select(OptimizerDecision).where(OptimizerDecision.deployment_id == deployment_id)
    return paginate(session, stmt, OptimizerDecision.id, page)


def latest(session: Session, deployment_id: uuid.UUID) -> OptimizerDecision | None:
    return session.scalar(
        select(OptimizerDecision)
        .where(OptimizerDecision.deployment_id == deployment_id)
        .order_by(OptimizerDecision.id.desc())
        .limit(1)
    )


def finished_runs(
    session: Session,
    project_id: uuid.UUID,
    entrypoint: str,
    instance_type: str | None,
    limit: int = 500,
) -> Sequence[TrainingRun]:
    """Completed runs of one entrypoint (and instance type), newest first.

    Tracked (external) runs ran on the caller's machine, not on instances: they say nothing
    about instance counts."""
    stmt = select(TrainingRun).where(
        TrainingRun.project_id == project_id,
        TrainingRun.status == "completed",
        TrainingRun.backend != "external",
        TrainingRun.spec["entrypoint"].as_string() == entrypoint,
        TrainingRun.started_at.is_not(None),
        TrainingRun.ended_at.is_not(None),
    )
    if instance_type is not None:
        stmt = stmt.where(TrainingRun.spec["instance_type"].as_string() == instance_type)
    return session.scalars(stmt.order_by(TrainingRun.id.desc()).limit(limit)).all()
