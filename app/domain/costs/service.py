"""What a project has spent: training runs and deployments, priced by instance type."""

from __future__ import annotations

import uuid
from collections import defaultdict

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.domain.access import Principal, Role, authorize
from app.domain.costs import repository
from app.domain.costs.accounting import (
    deployment_instance_seconds,
    priced,
    run_instance_seconds,
)
from app.domain.projects import repository as projects_repo


class CostLine(BaseModel):
    instance_type: str = Field(description="The instance type.")
    instance_seconds: float = Field(description="Instance-seconds used on it.")
    cost_usd: float | None = Field(
        description="Their cost; null when the type has no known price."
    )  # None: no price known for this instance type


class CostSummary(BaseModel):
    project_id: uuid.UUID = Field(description="The project.")
    currency: str = Field(default="USD", description="Currency of every amount.")
    training: list[CostLine] = Field(description="Training spend per instance type.")
    serving: list[CostLine] = Field(description="Serving spend per instance type.")
    total_usd: float = Field(description="Training and serving together (priced types only).")
    unpriced_instance_types: list[str] = Field(
        description="Types used that have no price, so are not in the total."
    )
    budget_usd: float | None = Field(description="The project's budget; null when it has none.")
    budget_remaining_usd: float | None = Field(
        description="Budget minus total; null without a budget."
    )


def _lines(seconds: dict[str, float]) -> list[CostLine]:
    return [
        CostLine(instance_type=t, instance_seconds=round(s, 3), cost_usd=priced(t, s))
        for t, s in sorted(seconds.items())
    ]


def _project_lines(
    session: Session, project_id: uuid.UUID
) -> tuple[list[CostLine], list[CostLine]]:
    """Training and serving lines of a project, up to now."""
    now = utcnow()
    training = defaultdict(float, repository.billed_run_seconds(session, project_id))
    for instance_type, started, ended, count in repository.unbilled_started_runs(
        session, project_id
    ):
        training[instance_type or "local"] += run_instance_seconds(
            None, started, ended, count or 1, now
        )
    serving: defaultdict[str, float] = defaultdict(float)
    for d in repository.deployments_of(session, project_id):
        serving[d.instance_type] += deployment_instance_seconds(
            d.instance_seconds, d.current_instances, d.capacity_since, now
        )
    return _lines(dict(training)), _lines(dict(serving))


def _total(lines: tuple[list[CostLine], list[CostLine]]) -> float:
    return round(sum(line.cost_usd or 0.0 for group in lines for line in group), 4)


def spent_usd(session: Session, project_id: uuid.UUID) -> float:
    """What the project has spent so far, in USD (unpriced instance types count 0)."""
    return _total(_project_lines(session, project_id))


def project_costs(session: Session, principal: Principal, project_id: uuid.UUID) -> CostSummary:
    """Instance-seconds and USD per instance type, for training and for serving (viewers)."""
    authorize(session, principal, project_id, Role.VIEWER)
    lines = _project_lines(session, project_id)
    total = _total(lines)
    unpriced = sorted({ln.instance_type for g in lines for ln in g if ln.cost_usd is None})
    project = projects_repo.get(session, project_id)
    budget = float(project.budget_usd) if project and project.budget_usd is not None else None
    return CostSummary(
        project_id=project_id,
        training=lines[0],
        serving=lines[1],
        total_usd=total,
        unpriced_instance_types=unpriced,
        budget_usd=budget,
        budget_remaining_usd=None if budget is None else round(budget - total, 4),
    )
