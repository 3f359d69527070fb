"""Idempotency-Key on creating POSTs: replay, mismatch, in flight, failure, expiry."""

from __future__ import annotations

import json
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.domain.access import Role
from app.domain.idempotency.models import IdempotencyRecord
from app.domain.outbox.models import OutboxMessage
from app.domain.projects.models import Project
from app.domain.runs.models import TrainingRun
from tests.factories import LOCAL_SPEC, make_key, make_project

RUN = {"name": "r1", "spec": LOCAL_SPEC}


def _count(db: Session, model: type) -> int:
    return db.scalar(select(func.count()).select_from(model)) or 0


def test_same_key_same_body_replays_first_response(client: TestClient, db: Session) -> None:
    key = make_key(db)
    project = make_project(db, (key, Role.EDITOR))
    db.commit()
    headers = key.headers | {"Idempotency-Key": "run-1"}
    url = f"/v1/projects/{project.id}/runs"
    first = client.post(url, json=RUN, headers=headers)
    # Same JSON, other key order and spacing: still the same request.
    second = client.post(
        url,
        content=b'{"spec": %s,  "name": "r1"}'
        % json.dumps(dict(reversed(LOCAL_SPEC.items())), indent=1).encode(),
        headers=headers | {"Content-Type": "application/json"},
    )
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert _count(db, TrainingRun) == 1
    assert _count(db, OutboxMessage) == 1


def test_same_key_other_body_is_422_and_changes_nothing(client: TestClient, db: Session) -> None:
    key = make_key(db)
    db.commit()
    headers = key.headers | {"Idempotency-Key": "k"}
    assert client.post("/v1/projects", json={"name": "one"}, headers=headers).status_code == 201
    r = client.post("/v1/projects", json={"name": "two"}, headers=headers)
    assert r.status_code == 422
    assert r.json()["code"] == "idempotency_key_reused"
    assert db.scalars(select(Project.name)).all() == ["one"]


def test_same_key_other_path_is_422(client: TestClient, db: Session) -> None:
    key = make_key(db, admin=True)
    db.commit()
    headers = key.headers | {"Idempotency-Key": "k"}
    assert client.post("/v1/projects", json={"name": "x"}, headers=headers).status_code == 201
    assert client.post("/v1/api-keys", json={"name": "x"}, headers=headers).status_code == 422


def test_key_in_flight_is_409_until_its_lease_lapses(client: TestClient, db: Session) -> None:
    key = make_key(db)
    db.commit()
    headers = key.headers | {"Idempotency-Key": "busy"}
    assert client.post("/v1/projects", json={"name": "a"}, headers=headers).status_code == 201
    record = db.scalar(select(IdempotencyRecord))
    assert record is not None
    # Pretend the first request is still running on another replica.
    record.state = "in_flight"
    record.locked_until = utcnow() + timedelta(minutes=5)
    db.commit()
    r = client.post("/v1/projects", json={"name": "a"}, headers=headers)
    assert r.status_code == 409
    assert r.json()["code"] == "idempotency_in_flight"
    # Its holder died: once the lease lapses the key is taken over and the request runs.
    record.locked_until = utcnow() - timedelta(seconds=1)
    db.commit()
    r = client.post("/v1/projects", json={"name": "a"}, headers=headers)
    assert r.status_code == 409  # now a genuine conflict: project "a" exists
    assert r.json()["code"] == "name_taken"


def test_failed_request_releases_its_key(client: TestClient, db: Session) -> None:
    key = make_key(db)
    make_project(db, name="taken")
    db.commit()
    headers = key.headers | {"Idempotency-Key": "retry-me"}
    assert client.post("/v1/projects", json={"name": "taken"}, headers=headers).status_code == 409
    assert _count(db, IdempotencyRecord) == 0
    db.execute(Project.__table__.delete())
    db.commit()
    r = client.post("/v1/projects", json={"name": "taken"}, headers=headers)
    assert r.status_code == 201
    assert "idempotent-replayed" not in r.headers


def test_keys_belong_to_their_principal_and_last_a_day(client: TestClient, db: Session) -> None:
    alice, bob = make_key(db), make_key(db)
    db.commit()
    r1 = client.post(
        "/v1/projects", json={"name": "a1"}, headers=alice.headers | {"Idempotency-Key": "same"}
    )
    r2 = client.post(
        "/v1/projects", json={"name": "b1"}, headers=bob.headers | {"Idempotency-Key": "same"}
    )
    assert (r1.status_code, r2.status_code) == (201, 201)
    for record in db.scalars(select(IdempotencyRecord)):
        assert record.expires_at - record.created_at >= timedelta(hours=24)
        assert record.state == "completed"


def test_expired_record_is_not_replayed(client: TestClient, db: Session) -> None:
    key = make_key(db)
    db.commit()
    headers = key.headers | {"Idempotency-Key": "old"}
    first = client.post("/v1/projects", json={"name": "e1"}, headers=headers).json()
    db.execute(IdempotencyRecord.__table__.update().values(expires_at=utcnow() - timedelta(1)))
    db.execute(Project.__table__.delete())
    db.commit()
    again = client.post("/v1/projects", json={"name": "e1"}, headers=headers)
    assert again.status_code == 201
    assert again.json()["id"] != first["id"]
