"""Evaluations: batch jobs that score a model version on held-out data."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from app.api.deps import PageDep, PrincipalDep, SessionDep, SettingsDep, WriteDep
from app.domain.evaluations import service
from app.domain.evaluations.schemas import EvaluationCreate, EvaluationRead
from app.domain.runs.logs import LogPage
from app.domain.schemas import Page
from app.errors import problem_responses

router = APIRouter(tags=["evaluations"])


@router.post(
    "/v1/models/{model_version_id}/evaluations",
    status_code=201,
    response_model=EvaluationRead,
    summary="Evaluate a model version",
    responses=problem_responses(401, 403, 404, 409, 422),
)
def create_evaluation(
    model_version_id: uuid.UUID, data: EvaluationCreate, write: WriteDep, settings: SettingsDep
) -> JSONResponse:
    """Record a pending evaluation; a worker runs it on the project's backend with the model
    version's artifact as the ``model`` channel (``SM_CHANNEL_MODEL``) next to
    ``input_channels``. Code and data follow the rules of runs. Send an ``Idempotency-Key``
    to make a retry return the first evaluation instead of starting a second."""
    return write.respond(
        service.create_evaluation(write.session, write.principal, model_version_id, data, settings)
    )


@router.get(
    "/v1/models/{model_version_id}/evaluations",
    summary="List a model version's evaluations",
    responses=problem_responses(400, 401, 404),
)
def list_evaluations(
    model_version_id: uuid.UUID, session: SessionDep, principal: PrincipalDep, page: PageDep
) -> Page[EvaluationRead]:
    """The model version's evaluations, newest first."""
    items, cursor = service.list_evaluations(session, principal, model_version_id, page)
    return Page(items=items, next_cursor=cursor)


@router.get(
    "/v1/evaluations/{evaluation_id}",
    summary="Get an evaluation",
    responses=problem_responses(401, 404),
)
def get_evaluation(
    evaluation_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> EvaluationRead:
    """One evaluation: status, final metrics, cost."""
    return service.get_evaluation(session, principal, evaluation_id)


@router.post(
    "/v1/evaluations/{evaluation_id}/stop",
    status_code=202,
    summary="Stop an evaluation",
    responses=problem_responses(401, 403, 404, 409),
)
def stop_evaluation(
    evaluation_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> EvaluationRead:
    """Ask the evaluation to stop; a pending one stops at once, a submitted one via
    ``stopping``."""
    return service.stop_evaluation(session, principal, evaluation_id)


@router.get(
    "/v1/evaluations/{evaluation_id}/logs",
    summary="Read an evaluation's log",
    responses=problem_responses(401, 404, 409, 502, 503),
)
def evaluation_logs(
    evaluation_id: uuid.UUID,
    session: SessionDep,
    principal: PrincipalDep,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> LogPage:
    """The job's log lines after ``cursor``, oldest first; pass ``next_cursor`` to follow."""
    return service.read_logs(session, principal, evaluation_id, cursor, limit)
