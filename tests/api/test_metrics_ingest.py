"""Metric ingest guarantees: stored once per batch_id or Idempotency-Key, all or nothing,
413 over the caps, 429 over a key's budget — on PostgreSQL's COPY path."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.api.routes.metrics import BATCH
from app.domain.access import Role
from app.domain.audit.models import AuditEvent
from app.domain.metrics import repository
from app.domain.metrics.models import MetricBatchRecord, MetricPoint
from app.domain.metrics.points import InvalidPoint, copy_stream
from app.domain.metrics.points import rows as point_rows
from app.domain.projects.models import Membership
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


@pytest.mark.parametrize("path", ["/v1/projects", "/v1/runs/{run}/metrics"])
def test_a_chunked_body_over_the_limit_is_413_not_a_parse_error(
    client: TestClient, db: Session, setup: Any, path: str
) -> None:
    """No Content-Length to refuse up front: the count stops the stream, and the answer says
    why (not FastAPI's 400 "error parsing the body")."""
    editor, _, run = setup

    def chunks() -> Iterator[bytes]:
        yield b'{"points": ['
        for _ in range(2000):
            yield b'{"name": "loss", "value": 1.0, "step": 1},' * 64

    r = client.post(
        path.format(run=run.id),
        content=chunks(),
        headers={**editor.headers, "Content-Type": "application/json"},
    )
    assert r.status_code == 413, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert "over the limit" in r.json()["detail"]
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


def _events(db: Session) -> list[AuditEvent]:
    return list(db.scalars(select(AuditEvent).where(AuditEvent.action == "metrics.ingest")).all())


def test_one_audit_event_per_stored_batch_and_none_for_a_replay(
    client: TestClient, db: Session, setup: Any
) -> None:
    editor, _, run = setup
    url = f"/v1/runs/{run.id}/metrics"
    body = {"batch_id": "trainer-1-000007", "points": _points(1000)}
    for _ in range(3):
        assert client.post(url, json=body, headers=editor.headers).json() == {"accepted": 1000}
    assert client.post(url, json={"points": _points(5)}, headers=editor.headers).status_code == 201
    events = _events(db)
    assert [(e.actor_id, e.object_type, e.object_id, e.details) for e in events] == [
        (editor.id, "run", str(run.id), {"count": 1000, "batch_id": "trainer-1-000007"}),
        (editor.id, "run", str(run.id), {"count": 5}),
    ]
    assert {e.project_id for e in events} == {run.project_id}
    assert _count(db) == 1005


def test_a_refused_batch_claims_nothing_and_leaves_no_trace(
    client: TestClient, db: Session, setup: Any
) -> None:
    editor, _, run = setup
    viewer, stranger = make_key(db), make_key(db)
    db.add(Membership(project_id=run.project_id, principal_id=viewer.id, role=Role.VIEWER))
    db.commit()
    url = f"/v1/runs/{run.id}/metrics"
    body = {"batch_id": "b-1", "points": _points(10)}
    assert client.post(url, json=body, headers=viewer.headers).status_code == 403
    assert client.post(url, json=body, headers=stranger.headers).status_code == 404
    assert client.post(url, json=body).status_code == 401
    assert db.scalar(select(func.count()).select_from(MetricBatchRecord)) == 0
    assert _events(db) == []
    # The batch id is still free for the editor.
    assert client.post(url, json=body, headers=editor.headers).json() == {"accepted": 10}
    assert _count(db) == 10


def test_the_key_comes_first_then_the_body_then_the_headers(
    client: TestClient, db: Session, setup: Any
) -> None:
    editor, _, run = setup
    url = f"/v1/runs/{run.id}/metrics"
    bad_key = {"Idempotency-Key": "k" * 256}
    r = client.post(url, content=b"not json", headers=bad_key)
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    r = client.post(url, content=b"not json", headers=editor.headers | bad_key)
    assert r.status_code == 400
    assert r.json()["code"] == "malformed_json"
    assert "line 1, column 1" in r.json()["detail"]
    r = client.post(url, json={"points": _points(1)}, headers=editor.headers | bad_key)
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]
    r = client.post("/v1/runs/not-a-uuid/metrics", json={"points": _points(1)})
    assert r.status_code == 401
    assert _count(db) == 0


def test_a_batch_that_fails_to_store_releases_its_idempotency_key(
    client: TestClient, db: Session, setup: Any
) -> None:
    editor, _, run = setup
    headers = editor.headers | {"Idempotency-Key": "ingest-0002"}
    url = f"/v1/runs/{run.id}/metrics"
    late = [{"name": "loss", "value": 1.0, "timestamp": "9999-12-31T23:00:00-05:00"}]
    r = client.post(url, json={"points": _points(3) + late}, headers=headers)
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["body", "points", 3, "timestamp"]
    ok = client.post(url, json={"points": _points(3)}, headers=headers)
    assert ok.status_code == 201
    assert "idempotent-replayed" not in ok.headers
    assert _count(db) == 3


# Points whose timestamps take every path of the binary COPY encoding.
TRICKY = [
    {"name": "loss", "value": 0.5, "step": 0, "timestamp": "2026-11-27T10:15:00Z"},
    {"name": "loss", "value": -1e300, "step": 2**63 - 1, "timestamp": "2026-11-27T10:15:00.000001"},
    {"name": "a.b/c:d-e_f", "value": 3, "timestamp": "2026-11-27T12:15:00+02:00"},
    {"name": "loss", "value": 1e-300, "step": None, "timestamp": "2026-11-27T05:15:00-05:30"},
    {"name": "x" * 128, "value": 0.0, "step": 7},
    {"name": "edge", "value": 1.0, "timestamp": "0001-01-01T00:00:00Z"},
    {"name": "edge", "value": 2.0, "timestamp": "0001-01-01T00:00:00-03:00"},
    {"name": "edge", "value": 3.0, "timestamp": "9999-12-31T18:59:59.999999-05:00"},
    {"name": "edge", "value": 4.0, "timestamp": "9999-12-31T23:59:59.999999"},
    {"name": "edge", "value": 5.0, "timestamp": "1970-01-01T00:00:00+14:00"},
]


def test_the_copy_stream_stores_what_the_portable_rows_store(db: Session, setup: Any) -> None:
    _, _, run = setup
    batch = BATCH.validate_json(json.dumps({"points": TRICKY}))
    received = datetime(2026, 11, 27, 11, 0, 0, 123456, tzinfo=UTC)
    portable, copied = uuid.uuid4(), uuid.uuid4()
    rows = point_rows(batch["points"], received)
    assert repository.add_many(db, run.project_id, "run", portable, rows) == len(TRICKY)
    stream = copy_stream(run.project_id, "run", copied, batch["points"], received)
    assert repository.copy_stream(db, stream) == len(TRICKY)

    def stored(subject: uuid.UUID) -> list[tuple[Any, ...]]:
        return [
            tuple(r)
            for r in db.execute(
                select(
                    MetricPoint.project_id,
                    MetricPoint.subject_type,
                    MetricPoint.name,
                    MetricPoint.step,
                    MetricPoint.timestamp,
                    MetricPoint.value,
                )
                .where(MetricPoint.subject_id == subject)
                .order_by(MetricPoint.id)
            )
        ]

    assert stored(copied) == stored(portable)
    assert [r[4] for r in stored(copied)][4] == received
    assert len(stored(copied)) == len(TRICKY)


def test_the_copy_stream_handles_zones_and_refuses_what_rows_refuses(
    db: Session, setup: Any
) -> None:
    _, _, run = setup
    paris = ZoneInfo("Europe/Paris")  # not a fixed offset: summer and winter time
    points: list[Any] = [
        {"name": "z", "value": 1.0, "timestamp": datetime(2026, 3, 29, 1, 30, tzinfo=paris)},
        {"name": "z", "value": 2.0, "timestamp": datetime(2026, 3, 29, 3, 30, tzinfo=paris)},
        {"name": "z", "value": 3.0, "timestamp": datetime(2026, 7, 1, 12, 0, tzinfo=UTC)},
        {"name": "z", "value": 4.0, "timestamp": datetime(2026, 12, 1, 12, 0, tzinfo=paris)},
    ]
    received = datetime.now(UTC)
    subject = uuid.uuid4()
    stream = copy_stream(run.project_id, "run", subject, points, received)
    assert repository.copy_stream(db, stream) == len(points)
    stored = db.scalars(
        select(MetricPoint.timestamp)
        .where(MetricPoint.subject_id == subject)
        .order_by(MetricPoint.id)
    ).all()
    assert stored == [row[2] for row in point_rows(points, received)]
    assert [t.isoformat() for t in stored[:2]] == [
        "2026-03-29T00:30:00+00:00",
        "2026-03-29T01:30:00+00:00",
    ]
    for late in ("0001-01-01T00:00:00+00:01", "9999-12-31T23:59:59.999999-00:01"):
        point = {"name": "z", "value": 0.0, "timestamp": late}
        late_point = BATCH.validate_json(json.dumps({"points": [point]}))["points"][0]
        bad = {"points": [points[2], late_point]}
        with pytest.raises(InvalidPoint) as from_rows:
            point_rows(bad["points"], received)
        with pytest.raises(InvalidPoint) as from_stream:
            copy_stream(run.project_id, "run", subject, bad["points"], received)
        assert from_stream.value.to_problem() == from_rows.value.to_problem()
        assert from_rows.value.extra["errors"][0]["loc"] == ["body", "points", 1, "timestamp"]
