"""A run's metrics against the training step, downsampled the same way on PostgreSQL (SQL)
and SQLite (Python)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from app.clock import utcnow
from app.domain.access import Role
from app.domain.metrics import service
from app.domain.metrics.models import MetricPoint
from tests.factories import make_key, make_project, make_run


def _check(session: Session) -> None:
    key = make_key(session)
    project = make_project(session, (key, Role.VIEWER))
    run = make_run(session, project)
    start = utcnow() - timedelta(hours=1)
    for step in range(1000):  # steps 10..1009, arriving out of order in time
        session.add(
            MetricPoint(
                project_id=project.id,
                subject_type="run",
                subject_id=run.id,
                name="loss",
                step=step + 10,
                timestamp=start + timedelta(seconds=(step * 7) % 1000),
                value=float(step),
            )
        )
    session.add(  # a point without a step is left out of the step chart
        MetricPoint(
            project_id=project.id,
            subject_type="run",
            subject_id=run.id,
            name="lr",
            step=None,
            timestamp=start,
            value=0.1,
        )
    )
    session.flush()
    (loss,) = service.step_series(session, key.principal, "run", run.id, buckets=200)
    assert loss.name == "loss"
    assert loss.steps[:3] == [10.0, 15.0, 20.0]  # 1000 steps in 200 buckets of 5
    assert len(loss.steps) == 200
    assert loss.means[:2] == [pytest.approx(2.0), pytest.approx(7.0)]
    assert loss.means[-1] == pytest.approx(997.0)


def test_step_series_on_postgres(db: Session) -> None:
    _check(db)


def test_step_series_on_sqlite(sqlite_factory: sessionmaker[Session]) -> None:
    with sqlite_factory() as session:
        _check(session)
