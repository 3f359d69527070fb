"""Runs tracked from the caller's own training code (backend ``external``): finish them and
record their parameters. Metrics go through the run's ordinary metric ingest."""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.api.deps import WriteDep
from app.domain.runs import tracking
from app.domain.runs.external import RunCompletion, RunFailure, RunParams
from app.domain.runs.schemas import RunRead
from app.errors import problem_responses

router = APIRouter(tags=["runs"])
ERRORS = problem_responses(401, 403, 404, 409, 422)


@router.post("/v1/runs/{run_id}/complete", response_model=RunRead, responses=ERRORS)
def complete_run(run_id: uuid.UUID, data: RunCompletion, write: WriteDep) -> JSONResponse:
    """Mark an external run completed, with optional final metrics (editors)."""
    return write.respond(
        tracking.complete_run(write.session, write.principal, run_id, data), status_code=200
    )


@router.post("/v1/runs/{run_id}/fail", response_model=RunRead, responses=ERRORS)
def fail_run(run_id: uuid.UUID, data: RunFailure, write: WriteDep) -> JSONResponse:
    """Mark an external run failed, with the reason its code gives (editors)."""
    return write.respond(
        tracking.fail_run(write.session, write.principal, run_id, data), status_code=200
    )


@router.post("/v1/runs/{run_id}/params", response_model=RunRead, responses=ERRORS)
def log_params(run_id: uuid.UUID, data: RunParams, write: WriteDep) -> JSONResponse:
    """Merge parameters into a running external run's ``spec.hyperparameters`` (editors)."""
    return write.respond(
        tracking.log_params(write.session, write.principal, run_id, data), status_code=200
    )
