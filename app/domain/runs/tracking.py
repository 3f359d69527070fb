"""What a client does to a run it tracks from its own code: finish it and record parameters.

Only runs with backend ``external`` take these; a run with a job is finished by its backend.
Every status change goes through ``transition()``.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from app.domain.access import Principal, Role, visible
from app.domain.audit import service as audit
from app.domain.runs import repository
from app.domain.runs.external import MAX_HYPERPARAMETERS, RunCompletion, RunFailure, RunParams
from app.domain.runs.models import TrainingRun
from app.domain.runs.schemas import EXTERNAL, RunRead
from app.domain.runs.service import transition
from app.domain.runs.states import RunStatus
from app.errors import Conflict, Unprocessable


def _tracked(session: Session, principal: Principal, run_id: uuid.UUID) -> TrainingRun:
    """The editor's running external run; 404 unseen, 403 viewer, 409 wrong kind or state."""
    run = visible(session, principal, repository.get(session, run_id), Role.EDITOR, "Run", run_id)
    if run.backend != EXTERNAL:
        raise Conflict(
            f"Run {run_id} runs on the {run.backend} backend, which finishes it; only "
            "external runs are finished by their client.",
            code="not_external",
        )
    if run.status != RunStatus.RUNNING:
        raise Conflict(f"The run is already {run.status}.", code="run_finished")
    return run


def _finish(
    session: Session,
    principal: Principal,
    run: TrainingRun,
    target: RunStatus,
    action: str,
    **values: Any,
) -> RunRead:
    if not transition(session, run.id, RunStatus.RUNNING, target, **values):
        raise Conflict("The run changed state meanwhile; read it and retry.", code="stale")
    audit.record(session, principal, action, "run", run.id, run.project_id, {"to": str(target)})
    session.refresh(run)
    return RunRead.model_validate(run)


def complete_run(
    session: Session, principal: Principal, run_id: uuid.UUID, data: RunCompletion
) -> RunRead:
    """The client's training ended well: running -> completed, with its final metrics."""
    run = _tracked(session, principal, run_id)
    final = {k: float(v) for k, v in data.final_metrics.items()}
    return _finish(
        session, principal, run, RunStatus.COMPLETED, "run.complete", final_metrics=final
    )


def fail_run(
    session: Session, principal: Principal, run_id: uuid.UUID, data: RunFailure
) -> RunRead:
    """The client's training raised: running -> failed, with the reason it gives."""
    run = _tracked(session, principal, run_id)
    return _finish(
        session, principal, run, RunStatus.FAILED, "run.fail", failure_reason=data.reason
    )


def log_params(
    session: Session, principal: Principal, run_id: uuid.UUID, data: RunParams
) -> RunRead:
    """Merge parameters into the running run's ``spec.hyperparameters`` (later values win)."""
    run = _tracked(session, principal, run_id)
    merged = {**run.spec.get("hyperparameters", {}), **data.hyperparameters}
    if len(merged) > MAX_HYPERPARAMETERS:
        raise Unprocessable(
            f"A run holds at most {MAX_HYPERPARAMETERS} hyperparameters; this would make "
            f"{len(merged)}.",
            code="too_many_hyperparameters",
        )
    spec = {**run.spec, "hyperparameters": merged}
    if not repository.guarded_update(session, run.id, RunStatus.RUNNING, {"spec": spec}):
        raise Conflict("The run changed state meanwhile; read it and retry.", code="stale")
    audit.record(
        session,
        principal,
        "run.params",
        "run",
        run.id,
        run.project_id,
        {"keys": sorted(data.hyperparameters)},
    )
    session.refresh(run)
    return RunRead.model_validate(run)
