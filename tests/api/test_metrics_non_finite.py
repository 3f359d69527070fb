"""Non-finite metric values: refused unless the batch allows them, then stored and shown as
"NaN"/"Infinity"/"-Infinity" and left out of aggregates and the optimizer's windows; on
PostgreSQL (binary COPY) and SQLite (INSERT) alike."""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import TypeAdapter
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from app.domain.access import Role
from app.domain.metrics import aggregates, repository
from app.domain.metrics.points import admit_non_finite, rows
from app.domain.metrics.schemas import MetricBatch
from app.domain.optimizer import repository as optimizer_repo
from app.migrate import upgrade
from tests.factories import make_key, make_project, make_run

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DIVERGED = [
    {"name": "loss", "value": 0.5, "step": 1, "timestamp": "2026-12-01T12:00:00Z"},
    {"name": "loss", "value": "Infinity", "step": 2, "timestamp": "2026-12-01T12:00:01Z"},
    {"name": "loss", "value": "NaN", "step": 3, "timestamp": "2026-12-01T12:00:02Z"},
    {"name": "loss", "value": 0.25, "step": 4, "timestamp": "2026-12-01T12:00:03Z"},
    {"name": "grad", "value": "-Infinity", "timestamp": "2026-12-01T12:00:03Z"},
]


@pytest.fixture
def run(db: Session) -> Any:
    key = make_key(db)
    project = make_project(db, (key, Role.EDITOR))
    training = make_run(db, project, status="running")
    db.commit()
    return key, training


def test_refused_unless_the_batch_allows_them(client: TestClient, run: Any) -> None:
    key, training = run
    url = f"/v1/runs/{training.id}/metrics"
    refused = client.post(url, json={"points": DIVERGED}, headers=key.headers)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["loc"] == ["body", "points", 1, "value"]
    assert "allow_non_finite" in refused.json()["detail"]
    for bad in ("nan", "inf", "1.5", True):
        body = {"allow_non_finite": True, "points": [{"name": "loss", "value": bad}]}
        assert client.post(url, json=body, headers=key.headers).status_code == 422, bad
    history = client.get(url, headers=key.headers).json()["items"]
    assert history == []


def test_stored_shown_and_left_out_of_aggregates(client: TestClient, run: Any) -> None:
    key, training = run
    url = f"/v1/runs/{training.id}/metrics"
    body = {"allow_non_finite": True, "points": DIVERGED}
    accepted = client.post(url, json=body, headers=key.headers)
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["accepted"] == 5
    history = client.get(url, params={"name": "loss"}, headers=key.headers).json()["items"]
    assert [p["value"] for p in history] == [0.5, "Infinity", "NaN", 0.25]
    latest = client.get(f"{url}/latest", headers=key.headers).json()["items"]
    assert {p["name"]: p["value"] for p in latest} == {"grad": "-Infinity", "loss": 0.25}
    series = client.get(
        f"{url}/series", params={"name": "loss", "buckets": 1}, headers=key.headers
    ).json()["items"][0]["buckets"][0]
    assert (series["count"], series["min"], series["max"], series["mean"]) == (
        2,
        0.25,
        0.5,
        0.375,
    )


def _store_and_read(session: Session, subject: Any, project: Any) -> None:
    body = json.dumps({"allow_non_finite": True, "points": DIVERGED})
    batch = TypeAdapter(MetricBatch).validate_json(body)
    admit_non_finite(batch)
    repository.add_many(session, project, "deployment", subject, rows(batch["points"], T0))
    stats = aggregates.window_aggregates(
        session, subject, ["loss", "grad"], T0, T0 + timedelta(minutes=1)
    )
    assert stats["loss"] == (2, 0.375, pytest.approx(0.4875))
    assert stats["grad"].points == 0
    window = optimizer_repo.window_points(
        session, subject, ["loss", "grad"], T0, T0 + timedelta(minutes=1)
    )
    assert [v for _, _, v in window] == [0.5, 0.25]
    values = [p.value for p in aggregates.latest(session, subject)]
    assert values[0] == -math.inf


def test_sqlite_stores_nan_and_infinity_too(tmp_path: Any, db: Session) -> None:
    url = f"sqlite:///{tmp_path / 'metrics.db'}"
    upgrade(url)
    engine = create_engine(url)
    project = make_project(db)  # only for a project id; SQLite keeps no foreign keys here
    with Session(engine) as session:
        _store_and_read(session, project.id, project.id)
    engine.dispose()


def test_postgres_windows_leave_them_out(db: Session) -> None:
    project = make_project(db)
    _store_and_read(db, uuid.uuid4(), project.id)
