"""Metric ingest guarantees: stored once per batch_id or Idempotency-Key, all or nothing,
413 over the caps, 429 over a key's budget — on PostgreSQL's COPY path."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.domain.access import Role
from app.domain.metrics.models import MetricBatchRecord, MetricPoint
from app.main import create_app
from app.ratelimit import LocalBuckets
from app.settings import MetricsSettings, Settings
from tests.factories import make_key, make_project, make_run


def _count(db: Session) -> int:
    return db.scalar(select(func.count()).select_from(MetricPoint)) or 0


@pytest.fixture
def setup(db: Session) -> Any:
    editor, other_editor = make_key(db), make_key(db)
    project = make_project(db, (editor, Role.EDITOR), (other_editor, Role.EDITOR))
    run = make_run(db, project, status="running")
    db.commit()
    return editor, other_editor, run


def _points(n: int, name: str = "loss") -> list[dict[str, Any]]:
    return [{"name": name, "value": i / 3, "step": i} for i in range(n)]


def test_a_retried_batch_id_stores_nothing_twice(
    client: TestClient, db: Session, setup: Any
) -> None:
    editor, _, run = setup
    url = f"/v1/runs/{run.id}/metrics"
    body = {"batch_id": "trainer-1-000001", "points": _points(250)}
    first = client.post(url, json=body, headers=editor.headers)
    assert first.status_code == 201, first.text
    assert first.json() == {"accepted": 250}
    retry = client.post(url, json=body, headers=editor.headers)
    assert retry.status_code == 201
    assert retry.json() == {"accepted": 250}
    assert retry.headers["idempotent-replayed"] == "true"
    assert _count(db) == 250
    # Another batch id, or the same id on another subject, is a new batch.
    assert client.post(url, json=body | {"batch_id": "b2"}, headers=editor.headers).json() == {
        "accepted": 250
    }
    assert _count(db) == 500


def test_a_batch_id_reused_for_another_batch_is_a_conflict(
    client: TestClient, db: Session, setup: Any
) -> None:
    editor, _, run = setup
    url = f"/v1/runs/{run.id}/metrics"
    assert (
        client.post(
            url, json={"batch_id": "b", "points": _points(3)}, headers=editor.headers
        ).status_code
        == 201
    )
    r = client.post(url, json={"batch_id": "b", "points": _points(4)}, headers=editor.headers)
    assert r.status_code == 409
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "batch_id_reused"
    assert _count(db) == 3


def test_a_failed_batch_leaves_no_batch_id_behind(
    client: TestClient, db: Session, setup: Any
) -> None:
    editor, _, run = setup
    url = f"/v1/runs/{run.id}/metrics"
    bad = _points(10)
    bad[9]["value"] = "high"
    r = client.post(url, json={"batch_id": "b", "points": bad}, headers=editor.headers)
    assert r.status_code == 422
    assert db.scalar(select(func.count()).select_from(MetricBatchRecord)) == 0
    good = client.post(url, json={"batch_id": "b", "points": _points(10)}, headers=editor.headers)
    assert good.json() == {"accepted": 10}
    assert _count(db) == 10


def test_idempotency_key_replays_without_storing_again(
    client: TestClient, db: Session, setup: Any
) -> None:
    editor, _, run = setup
    url = f"/v1/runs/{run.id}/metrics"
    headers = editor.headers | {"Idempotency-Key": "ingest-0001"}
    body = {"points": _points(1000)}
    assert client.post(url, json=body, headers=headers).json() == {"accepted": 1000}
    replay = client.post(url, json=body, headers=headers)
    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == {"accepted": 1000}
    assert _count(db) == 1000


def test_a_body_over_the_size_limit_is_413(client: TestClient, db: Session, setup: Any) -> None:
    editor, _, run = setup
    padding = "x" * 128
    points = [{"name": "loss", "value": 1.0, "batch": padding}] * 50_000  # about 8 MB
    r = client.post(f"/v1/runs/{run.id}/metrics", json={"points": points}, headers=editor.headers)
    assert r.status_code == 413
    assert r.headers["content-type"] == "application/problem+json"
    assert _count(db) == 0


@pytest.fixture
def limited_client(
    settings: Settings, session_factory: sessionmaker[Session]
) -> Iterator[TestClient]:
    """The API with a tiny ingest budget: one full batch, then 10 points a second."""
    budget = MetricsSettings(ingest_points_per_s=10, ingest_burst_points=10_000)
    app = create_app(settings.model_copy(update={"metrics": budget}), session_factory)
    with TestClient(app) as test_client:
        yield test_client


def test_a_key_over_its_budget_gets_429_and_others_do_not(
    limited_client: TestClient, db: Session, setup: Any
) -> None:
    editor, other_editor, run = setup
    url = f"/v1/runs/{run.id}/metrics"
    full = limited_client.post(url, json={"points": _points(10_000)}, headers=editor.headers)
    assert full.status_code == 201
    over = limited_client.post(url, json={"points": _points(500)}, headers=editor.headers)
    assert over.status_code == 429
    assert over.headers["content-type"] == "application/problem+json"
    assert over.json()["code"] == "ingest_rate_limited"
    assert 1 <= int(over.headers["retry-after"]) <= 60
    # One key's exhausted budget is not another's.
    ok = limited_client.post(url, json={"points": _points(500)}, headers=other_editor.headers)
    assert ok.status_code == 201
    assert _count(db) == 10_500


def test_local_buckets_refill_with_time() -> None:
    now = [1000.0]
    buckets = LocalBuckets(rate=100, burst=1000, clock=lambda: now[0])
    key = uuid.uuid4()
    assert buckets.take(key, 1000) == 0
    assert buckets.take(key, 200) == pytest.approx(2.0)
    now[0] += 1.5
    assert buckets.take(key, 100) == 0  # 150 refilled
    assert buckets.take(uuid.uuid4(), 1000) == 0
