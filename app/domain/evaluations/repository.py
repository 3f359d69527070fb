"""Every query on evaluations."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain.evaluations.models import Evaluation
from app.domain.evaluations.states import EvaluationStatus
from app.domain.lifecycle import StatusRepository
from app.domain.pagination import PageRequest, paginate

ROWS = StatusRepository(Evaluation)
S = EvaluationStatus


def get(session: Session, evaluation_id: uuid.UUID) -> Evaluation | None:
    return session.get(Evaluation, evaluation_id)


def list_for_model(
    session: Session, model_version_id: uuid.UUID, page: PageRequest
) -> tuple[Sequence[Evaluation], str | None]:
    stmt = select(Evaluation).where(Evaluation.model_version_id == model_version_id)
    return paginate(session, stmt, Evaluation.id, page)


def latest_completed(session: Session, model_version_id: uuid.UUID) -> Evaluation | None:
    """The model version's most recently completed evaluation."""
    return session.scalar(
        select(Evaluation)
        .where(Evaluation.model_version_id == model_version_id, Evaluation.status == S.COMPLETED)
        .order_by(Evaluation.ended_at.desc(), Evaluation.id.desc())
        .limit(1)
    )


def latest_completed_many(
    session: Session, model_version_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Evaluation]:
    """The latest completed evaluation of each of the model versions that has one."""
    if not model_version_ids:
        return {}
    rows = session.scalars(
        select(Evaluation)
        .where(
            Evaluation.model_version_id.in_(list(model_version_ids)),
            Evaluation.status == S.COMPLETED,
        )
        .order_by(Evaluation.ended_at, Evaluation.id)
    ).all()
    return {row.model_version_id: row for row in rows}  # later rows overwrite earlier ones


def list_in_flight(
    session: Session, backend: str, limit: int, after: uuid.UUID | None = None
) -> Sequence[Evaluation]:
    """Evaluations of a backend whose job may be moving, in id order after ``after``."""
    stmt = select(Evaluation).where(
        Evaluation.backend == backend,
        Evaluation.status.in_([S.SUBMITTING, S.RUNNING, S.STOPPING]),
    )
    if after is not None:
        stmt = stmt.where(Evaluation.id > after)
    return session.scalars(stmt.order_by(Evaluation.id).limit(limit)).all()
