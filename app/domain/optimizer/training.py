"""Training-side recommendation: the same fit over a project's past runs (duration vs count)."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from app.backends.prices import hourly_price
from app.domain.access import Principal, Role, authorize
from app.domain.optimizer import repository
from app.domain.optimizer.schemas import TrainingRecommendationRead
from app.optimizer.training import TrainingRun, recommend_instance_count


def recommend(
    session: Session,
    principal: Principal,
    project_id: uuid.UUID,
    entrypoint: str,
    instance_type: str | None,
    max_duration_s: float | None,
) -> TrainingRecommendationRead:
    """Instance count for the next run of ``entrypoint`` from its completed runs (viewers)."""
    authorize(session, principal, project_id, Role.VIEWER)
    runs = repository.finished_runs(session, project_id, entrypoint, instance_type)
    if instance_type is None and runs:
        instance_type = str(runs[0].spec.get("instance_type", "local"))
        runs = [r for r in runs if r.spec.get("instance_type", "local") == instance_type]
    price = (hourly_price(instance_type) if instance_type else None) or 1e-6
    past = []
    for run in reversed(runs):  # oldest first
        if run.started_at is None or run.ended_at is None:
            continue
        count = int(run.spec.get("instance_count", 1))
        # Wall time is what more or fewer instances change; billed time includes start-up.
        duration = (run.ended_at - run.started_at).total_seconds()
        if duration > 0:
            past.append(TrainingRun(count, duration, price))
    result = recommend_instance_count(
        past, max_duration_s=max_duration_s, price_per_instance_hour=price
    )
    return TrainingRecommendationRead(
        entrypoint=entrypoint,
        instance_type=instance_type,
        runs_used=len(past),
        **result.to_dict(),
    )
