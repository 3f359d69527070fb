"""The efficiency optimizer: decisions, what-if, and training recommendations."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import PageDep, PrincipalDep, SessionDep
from app.clock import utcnow
from app.domain.optimizer import service, training
from app.domain.optimizer.schemas import (
    DecisionRead,
    TrainingRecommendationRead,
    WhatIfRead,
    WhatIfRequest,
)
from app.domain.schemas import Page
from app.errors import problem_responses

router = APIRouter(tags=["optimizer"])


@router.get("/v1/deployments/{deployment_id}/decisions", responses=problem_responses(400, 401, 404))
def list_decisions(
    deployment_id: uuid.UUID, session: SessionDep, principal: PrincipalDep, page: PageDep
) -> Page[DecisionRead]:
    """The optimizer's decisions for a deployment, newest first, each with its reason."""
    items, cursor = service.list_decisions(session, principal, deployment_id, page)
    return Page(items=items, next_cursor=cursor)


@router.get(
    "/v1/deployments/{deployment_id}/decisions/latest", responses=problem_responses(401, 404)
)
def latest_decision(
    deployment_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> DecisionRead:
    """The optimizer's most recent decision for the deployment, with its reason."""
    return service.latest_decision(session, principal, deployment_id)


@router.post("/v1/deployments/{deployment_id}/what-if", responses=problem_responses(401, 404, 422))
def what_if(
    deployment_id: uuid.UUID, data: WhatIfRequest, session: SessionDep, principal: PrincipalDep
) -> WhatIfRead:
    """Predicted p95 latency, efficiency E and cost/hour for any instance counts (and load)."""
    return service.evaluate(session, principal, deployment_id, data, utcnow())


@router.get(
    "/v1/projects/{project_id}/recommendations/training",
    responses=problem_responses(401, 404, 422),
)
def training_recommendation(
    project_id: uuid.UUID,
    session: SessionDep,
    principal: PrincipalDep,
    entrypoint: Annotated[str, Query(min_length=1, max_length=256)],
    instance_type: Annotated[str | None, Query(max_length=64)] = None,
    max_duration_s: Annotated[float | None, Query(gt=0, le=28 * 86400)] = None,
) -> TrainingRecommendationRead:
    """An instance count for the next run of ``entrypoint``, fitted on its past runs."""
    return training.recommend(
        session, principal, project_id, entrypoint, instance_type, max_duration_s
    )
