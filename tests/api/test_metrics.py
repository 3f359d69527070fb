"""Metric ingest and history through the HTTP API, on PostgreSQL."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.domain.access import Role
from app.domain.audit.models import AuditEvent
from app.domain.metrics.models import MetricPoint
from tests.factories import Key, make_deployment, make_key, make_project, make_run

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def _count(db: Session) -> int:
    return db.scalar(select(func.count()).select_from(MetricPoint)) or 0


@pytest.fixture
def setup(db: Session) -> Any:
    """An editor, a viewer, a run and a deployment in their project."""
    editor, viewer = make_key(db), make_key(db)
    project = make_project(db, (editor, Role.EDITOR), (viewer, Role.VIEWER))
    run = make_run(db, project, status="running")
    deployment = make_deployment(db, project, status="in_service")
    db.commit()
    return editor, viewer, project, run, deployment


def _post_raw(client: TestClient, url: str, key: Key, body: Any) -> Any:
    # json.dumps writes NaN/Infinity literals, which httpx's json= refuses to send.
    headers = key.headers | {"content-type": "application/json"}
    return client.post(url, content=json.dumps(body), headers=headers)


def _walk(client: TestClient, url: str, key: Key, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = params | ({"cursor": cursor} if cursor else {})
        page = client.get(url, params=query, headers=key.headers)
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return items


def test_run_batch_is_stored_and_read_back_in_order(
    client: TestClient, db: Session, setup: Any
) -> None:
    editor, _, project, run, _ = setup
    points = [
        {"name": name, "value": step / 10, "step": step, "timestamp": T0.isoformat()}
        for step in range(5)
        for name in ("loss", "acc")
    ]
    url = f"/v1/runs/{run.id}/metrics"
    r = client.post(url, json={"points": points}, headers=editor.headers)
    assert r.status_code == 201, r.text
    assert r.json() == {"accepted": 10}
    rows = db.scalars(select(MetricPoint)).all()
    assert {(p.project_id, p.subject_type, p.subject_id) for p in rows} == {
        (project.id, "run", run.id)
    }
    history = _walk(client, url, editor, limit=3)
    assert [(p["name"], p["step"]) for p in history] == [(p["name"], p["step"]) for p in points]
    loss = _walk(client, url, editor, name="loss", limit=2)
    assert [p["value"] for p in loss] == [0.0, 0.1, 0.2, 0.3, 0.4]
    events = db.scalars(select(AuditEvent).where(AuditEvent.action == "metrics.ingest")).all()
    assert [(e.object_type, e.object_id, e.details) for e in events] == [
        ("run", str(run.id), {"count": 10})
    ]


def test_deployment_points_timestamps_and_time_window(
    client: TestClient, db: Session, setup: Any
) -> None:
    editor, _, _, run, deployment = setup
    naive = (T0 + timedelta(minutes=1)).replace(tzinfo=None).isoformat()
    points = [
        {"name": "latency_p95_ms", "value": 40.0, "timestamp": T0.isoformat()},
        {"name": "latency_p95_ms", "value": 45.0, "timestamp": naive},
        {"name": "latency_p95_ms", "value": 50.0, "timestamp": "2026-11-27T12:02:00+02:00"},
        {"name": "invocations", "value": 120.0},
    ]
    url = f"/v1/deployments/{deployment.id}/metrics"
    before = datetime.now(UTC)
    r = client.post(url, json={"points": points}, headers=editor.headers)
    after = datetime.now(UTC)
    assert r.status_code == 201, r.text
    history = _walk(client, url, editor)
    stamps = [datetime.fromisoformat(p["timestamp"]) for p in history]
    # Oldest first by timestamp, wherever the point without one (stamped when received) falls.
    assert stamps == sorted(stamps)
    received = [s for s, p in zip(stamps, history, strict=True) if p["name"] == "invocations"]
    assert len(received) == 1
    assert before <= received[0] <= after
    given = [s for s, p in zip(stamps, history, strict=True) if p["name"] != "invocations"]
    assert given == [T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)]
    window = _walk(
        client,
        url,
        editor,
        since=(T0 + timedelta(minutes=1)).isoformat(),
        until=(T0 + timedelta(minutes=2)).isoformat(),
    )
    assert [p["value"] for p in window] == [45.0]
    # Points belong to their subject: the run has none.
    assert _walk(client, f"/v1/runs/{run.id}/metrics", editor) == []


@pytest.mark.parametrize(
    "bad",
    [
        {"name": "loss", "value": float("nan")},
        {"name": "loss", "value": float("inf")},
        {"name": "bad name!", "value": 1.0},
        {"name": "x" * 129, "value": 1.0},
        {"name": "loss", "value": 1.0, "step": -1},
        {"name": "loss", "value": "high"},
        {"name": "loss", "value": 1.0, "timestamp": "0001-01-01T00:00:00+05:00"},
        {"name": "loss", "value": 1.0, "timestamp": "9999-12-31T23:00:00-05:00"},
        {"name": "loss", "value": 1.0, "extra": True},
    ],
)
def test_one_bad_point_rejects_the_whole_batch(
    client: TestClient, db: Session, setup: Any, bad: dict[str, Any]
) -> None:
    editor, _, _, run, _ = setup
    points: list[dict[str, Any]] = [{"name": "loss", "value": i / 7} for i in range(100)]
    points[57] = bad
    r = _post_raw(client, f"/v1/runs/{run.id}/metrics", editor, {"points": points})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"][0]["loc"][:3] == ["body", "points", 57]
    assert _count(db) == 0


def test_batch_size_limits(client: TestClient, db: Session, setup: Any) -> None:
    editor, _, _, run, _ = setup
    url = f"/v1/runs/{run.id}/metrics"
    point = {"name": "loss", "value": 0.5}
    assert client.post(url, json={"points": []}, headers=editor.headers).status_code == 422
    too_many = client.post(url, json={"points": [point] * 10_001}, headers=editor.headers)
    assert too_many.status_code == 413
    assert too_many.headers["content-type"] == "application/problem+json"
    assert too_many.json()["code"] == "batch_too_large"
    assert "10,001" in too_many.json()["detail"]
    assert _count(db) == 0
    full = client.post(url, json={"points": [point] * 10_000}, headers=editor.headers)
    assert full.status_code == 201
    assert full.json() == {"accepted": 10_000}
    assert _count(db) == 10_000


def test_viewer_reads_but_cannot_ingest(client: TestClient, db: Session, setup: Any) -> None:
    _, viewer, _, run, deployment = setup
    body = {"points": [{"name": "loss", "value": 1.0}]}
    for url in (f"/v1/runs/{run.id}/metrics", f"/v1/deployments/{deployment.id}/metrics"):
        assert client.post(url, json=body, headers=viewer.headers).status_code == 403
        assert client.get(url, headers=viewer.headers).status_code == 200
    assert _count(db) == 0


def test_other_projects_subjects_answer_like_missing_ones(
    client: TestClient, db: Session, setup: Any
) -> None:
    editor = setup[0]
    other = make_project(db, (make_key(db), Role.OWNER))
    their_run, their_deployment = make_run(db, other), make_deployment(db, other)
    db.commit()
    body = {"points": [{"name": "loss", "value": 1.0}]}
    for url in (
        f"/v1/runs/{their_run.id}/metrics",
        f"/v1/deployments/{their_deployment.id}/metrics",
        f"/v1/runs/{uuid.uuid4()}/metrics",
        f"/v1/deployments/{uuid.uuid4()}/metrics",
    ):
        assert client.post(url, json=body, headers=editor.headers).status_code == 404
        assert client.get(url, headers=editor.headers).status_code == 404
    assert _count(db) == 0


def test_bad_history_filters_are_problems(client: TestClient, setup: Any) -> None:
    editor, _, _, run, _ = setup
    url = f"/v1/runs/{run.id}/metrics"
    for params in ({"name": "no spaces"}, {"since": "yesterday"}, {"cursor": "@@"}):
        r = client.get(url, params=params, headers=editor.headers)
        assert r.status_code in (400, 422), params
        assert r.headers["content-type"] == "application/problem+json"
