"""Evaluations through the HTTP API, on PostgreSQL: submit (idempotent), read, list, stop,
and bad input refused with nothing stored."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.backends.local.examples import recommender_evaluation
from app.domain.access import Role
from app.domain.audit.models import AuditEvent
from app.domain.evaluations.models import Evaluation
from app.domain.outbox.models import OutboxMessage
from tests.factories import make_key, make_model_version, make_project


@pytest.fixture
def model(db: Session) -> Any:
    key, viewer = make_key(db), make_key(db)
    project = make_project(db, (key, Role.EDITOR), (viewer, Role.VIEWER))
    version = make_model_version(db, project, name="recs")
    db.commit()
    return key, viewer, version


def _post(client: TestClient, key: Any, model_id: Any, body: Any, **headers: str) -> Any:
    return client.post(
        f"/v1/models/{model_id}/evaluations", json=body, headers={**key.headers, **headers}
    )


def test_submit_is_idempotent_listed_and_audited(
    client: TestClient, db: Session, model: Any
) -> None:
    key, viewer, version = model
    body = recommender_evaluation()
    first = _post(client, key, version.id, body, **{"Idempotency-Key": "eval-1"})
    assert first.status_code == 201, first.text
    again = _post(client, key, version.id, body, **{"Idempotency-Key": "eval-1"})
    assert again.json()["id"] == first.json()["id"]
    created = first.json()
    assert created["status"] == "pending"
    assert created["model_version_id"] == str(version.id)
    assert created["spec"]["entrypoint"] == "evaluate.py"
    assert created["cost_usd"] == 0.0
    assert db.scalar(select(func.count()).select_from(Evaluation)) == 1
    topics = db.scalars(select(OutboxMessage.topic)).all()
    assert topics == ["evaluation.submit"]
    got = client.get(f"/v1/evaluations/{created['id']}", headers=viewer.headers)
    assert got.status_code == 200
    assert got.json()["name"] == body["name"]
    listed = client.get(f"/v1/models/{version.id}/evaluations", headers=viewer.headers)
    assert [e["id"] for e in listed.json()["items"]] == [created["id"]]
    logs = client.get(f"/v1/evaluations/{created['id']}/logs", headers=viewer.headers)
    assert logs.json() == {"lines": [], "next_cursor": None}
    actions = db.scalars(select(AuditEvent.action)).all()
    assert actions == ["evaluation.create"]


def test_stop_a_pending_evaluation(client: TestClient, model: Any) -> None:
    key, viewer, version = model
    created = _post(client, key, version.id, recommender_evaluation()).json()
    path = f"/v1/evaluations/{created['id']}/stop"
    assert client.post(path, headers=viewer.headers).status_code == 403
    stopped = client.post(path, headers=key.headers)
    assert stopped.status_code == 202
    assert stopped.json()["status"] == "stopped"
    again = client.post(path, headers=key.headers)
    assert again.status_code == 409
    assert again.json()["code"] == "evaluation_finished"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"source_dir": None}, "code_bundle_id or source_dir"),
        ({"input_channels": {"model": "/tmp"}}, "model version's own channel"),  # noqa: S108
        ({"input_channels": {"test": "/etc"}}, "input_channels"),
        ({"source_dir": "/etc"}, "source_dir"),
        ({"instance_count": 0}, "instance_count"),
        ({"metric_definitions": [{"name": "x", "regex": "no group"}]}, "capture group"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_bad_input_is_refused_and_stores_nothing(
    client: TestClient, db: Session, model: Any, change: dict[str, Any], words: str
) -> None:
    key, _viewer, version = model
    body = {k: v for k, v in {**recommender_evaluation(), **change}.items() if v is not None}
    answer = _post(client, key, version.id, body)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert words in answer.text
    assert db.scalar(select(func.count()).select_from(Evaluation)) == 0


def test_another_projects_model_is_not_found(client: TestClient, db: Session, model: Any) -> None:
    _key, _viewer, version = model
    stranger = make_key(db)
    make_project(db, (stranger, Role.OWNER))
    db.commit()
    answer = _post(client, stranger, version.id, recommender_evaluation())
    assert answer.status_code == 404
    listed = client.get(f"/v1/models/{version.id}/evaluations", headers=stranger.headers)
    assert listed.status_code == 404


def test_an_evaluations_scraped_points_are_read_like_a_runs(
    client: TestClient, db: Session, model: Any
) -> None:
    from datetime import timedelta

    from app.clock import utcnow
    from app.domain.metrics import repository as metrics_repo
    from tests.factories import make_evaluation

    key, viewer, version = model
    evaluation = make_evaluation(db, version, status="completed")
    now = utcnow()
    rows = [("ndcg_at_10", None, now - timedelta(seconds=s), v) for s, v in ((2, 0.28), (1, 0.29))]
    metrics_repo.add_many(db, version.project_id, "evaluation", evaluation.id, rows)
    stranger = make_key(db)
    make_project(db, (stranger, Role.OWNER))
    db.commit()
    base = f"/v1/evaluations/{evaluation.id}/metrics"
    history = client.get(base, headers=viewer.headers)
    assert history.status_code == 200, history.text
    assert [p["value"] for p in history.json()["items"]] == [0.28, 0.29]
    latest = client.get(f"{base}/latest", headers=viewer.headers).json()
    assert [(p["name"], p["value"]) for p in latest["items"]] == [("ndcg_at_10", 0.29)]
    series = client.get(f"{base}/series", params={"buckets": 1}, headers=viewer.headers)
    assert [s["name"] for s in series.json()["items"]] == ["ndcg_at_10"]
    # Another project's key sees nothing, and clients cannot post an evaluation's points.
    assert client.get(base, headers=stranger.headers).status_code == 404
    posted = client.post(base, json={"points": []}, headers=key.headers)
    assert posted.status_code == 405
