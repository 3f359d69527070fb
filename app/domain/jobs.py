"""What differs between the kinds of batch job Stratus runs on a backend (training runs,
evaluations): the submit, stop and poll pipeline in ``runs.lifecycle`` and
``workers/tasks/runs.py`` is written once and takes a ``JobKind``."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app.backends.base import Backend, JobState, JobStatus, MetricPage, TrainingJobSpec
from app.domain.lifecycle import StatusRepository


@dataclass(frozen=True)
class JobKind:
    """One kind of job: its rows, state machine entry point, job names and backend calls."""

    noun: str  # "run", "evaluation": messages, metric subject type, poll window names
    rows: StatusRepository
    transition: Callable[..., bool]
    job_name: Callable[[uuid.UUID], str]
    list_in_flight: Callable[[Session, str, int, uuid.UUID | None], Sequence[Any]]
    # (session, row, role_arn, code_uri) -> the backend's job spec
    build_spec: Callable[[Session, Any, str | None, str | None], TrainingJobSpec]
    on_complete: Callable[[Session, Any], None]
    stop_topic: str
    submit: Callable[[Backend, TrainingJobSpec], str]
    describe: Callable[[Backend, Mapping[str, JobState], datetime | None], Mapping[str, JobStatus]]
    stop: Callable[[Backend, str], None]
    fetch_metrics: Callable[[Backend, str, str | None], MetricPage]
    produces_model: bool = False  # its artifact is kept (and registered by on_complete)

    @property
    def poll_key(self) -> str:
        return f"{self.noun}s"


def record_backend_unavailable(
    session: Session, kind: JobKind, row_id: uuid.UUID, reason: str
) -> None:
    """Say on the job's row why it is still waiting (no status change)."""
    row = kind.rows.get(session, row_id)
    if row is not None and row.status_reason != reason:
        row.status_reason = reason
