"""Registered-model aliases through the HTTP API, on PostgreSQL: moves gated by the latest
completed evaluation, name@alias wherever a model is taken, deployments that follow."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.domain.access import Role
from app.domain.audit.models import AuditEvent
from app.domain.evaluations.models import Evaluation
from app.domain.model_versions.models import ModelVersion
from app.domain.outbox.models import OutboxMessage
from app.domain.projects.models import Project
from tests.factories import make_deployment, make_key, make_model_version, make_project

GATE = {"ndcg_at_10": {">=": 0.3}}


def _evaluated(
    db: Session, model: ModelVersion, metrics: dict[str, float], status: str = "completed"
) -> Evaluation:
    evaluation = Evaluation(
        project_id=model.project_id,
        model_version_id=model.id,
        name="holdout",
        backend="local",
        spec={},
        status=status,
        final_metrics=metrics,
        ended_at=utcnow(),
    )
    db.add(evaluation)
    db.flush()
    return evaluation


@pytest.fixture
def versions(db: Session) -> Any:
    """recs v1 (nDCG 0.35, evaluated twice), v2 (0.12), v3 (never evaluated)."""
    key, viewer = make_key(db), make_key(db)
    project = make_project(db, (key, Role.EDITOR), (viewer, Role.VIEWER))
    v1, v2, v3 = (make_model_version(db, project, name="recs") for _ in range(3))
    old = _evaluated(db, v1, {"ndcg_at_10": 0.1})
    old.ended_at = utcnow() - timedelta(hours=1)
    _evaluated(db, v1, {"ndcg_at_10": 0.35, "recall_at_10": 0.4})
    _evaluated(db, v2, {"ndcg_at_10": 0.12})
    _evaluated(db, v2, {"ndcg_at_10": 0.9}, status="failed")  # not a completed one
    db.commit()
    return key, viewer, project, (v1, v2, v3)


def _path(project: Project, alias: str = "production", name: str = "recs") -> str:
    return f"/v1/projects/{project.id}/registered-models/{name}/aliases/{alias}"


def test_gate_refuses_a_worse_version_with_metric_value_and_bound(
    client: TestClient, db: Session, versions: Any
) -> None:
    key, viewer, project, (v1, v2, v3) = versions
    path = _path(project)
    assert client.put(path, json={"version": 1}, headers=viewer.headers).status_code == 403
    moved = client.put(path, json={"version": 1, "requires": GATE}, headers=key.headers)
    assert moved.status_code == 200, moved.text
    assert moved.json()["model_version_id"] == str(v1.id)
    assert moved.json()["requires"] == GATE
    # The requirements stay on the alias: a later move without them is still gated.
    refused = client.put(path, json={"version": 2}, headers=key.headers)
    assert refused.status_code == 409
    problem = refused.json()
    assert problem["code"] == "gate_failed"
    assert "ndcg_at_10 = 0.12" in problem["detail"]
    assert ">= 0.3" in problem["detail"]
    unevaluated = client.put(path, json={"version": 3}, headers=key.headers)
    assert unevaluated.status_code == 409
    assert "no completed evaluation" in unevaluated.json()["detail"]
    got = client.get(path, headers=viewer.headers)
    assert (got.json()["version"], got.json()["requires"]) == (1, GATE)
    # Clearing the requirements lets any version through.
    cleared = client.put(path, json={"version": 3, "requires": {}}, headers=key.headers)
    assert cleared.status_code == 200
    assert client.get(path, headers=key.headers).json()["version"] == 3
    assert client.put(path, json={"version": 9}, headers=key.headers).status_code == 404
    moves = db.scalars(select(AuditEvent.details).where(AuditEvent.action == "alias.move")).all()
    assert [m["version"] for m in moves] == [1, 3]
    assert client.delete(path, headers=viewer.headers).status_code == 403
    assert client.delete(path, headers=key.headers).status_code == 204
    assert client.get(path, headers=key.headers).status_code == 404


def test_bad_alias_input_is_refused(client: TestClient, versions: Any) -> None:
    key, _viewer, project, _ = versions
    path = _path(project)
    for body in (
        {"version": 0},
        {"version": "1"},
        {"version": 1, "requires": {"ndcg_at_10": {"~": 0.3}}},
        {"version": 1, "requires": {"ndcg_at_10": {}}},
        {"version": 1, "extra": True},
    ):
        answer = client.put(path, json=body, headers=key.headers)
        assert answer.status_code == 422, body
    bad_name = client.put(_path(project, "bad alias"), json={"version": 1}, headers=key.headers)
    assert bad_name.status_code == 422
    assert client.get(_path(project), headers=key.headers).status_code == 404


def test_name_at_alias_in_the_models_api_and_deployments_that_follow(
    client: TestClient, db: Session, versions: Any
) -> None:
    key, _viewer, project, (v1, _v2, v3) = versions
    client.put(_path(project), json={"version": 1}, headers=key.headers)
    base = f"/v1/projects/{project.id}"
    listed = client.get(f"{base}/models", params={"name": "recs@production"}, headers=key.headers)
    assert [m["id"] for m in listed.json()["items"]] == [str(v1.id)]
    missing = client.get(f"{base}/models", params={"name": "recs@canary"}, headers=key.headers)
    assert missing.status_code == 404
    body = {"name": "recs-live", "model": "recs@production", "backend": "local"}
    created = client.post(f"{base}/deployments", json=body, headers=key.headers)
    assert created.status_code == 201, created.text
    assert created.json()["model_version_id"] == str(v1.id)
    assert created.json()["follows"] == "recs@production"
    both = {**body, "name": "both", "model_version_id": str(v1.id)}
    assert client.post(f"{base}/deployments", json=both, headers=key.headers).status_code == 422
    # An in-service follower of the alias rolls when it moves; a pinned deployment does not.
    follower = make_deployment(
        db, project, v1, status="in_service", follows="recs@production", name="f"
    )
    pinned = make_deployment(db, project, v1, status="in_service", name="pinned")
    db.commit()
    moved = client.put(_path(project), json={"version": 3}, headers=key.headers)
    assert moved.status_code == 200
    db.expire_all()
    assert db.get(type(follower), follower.id).model_version_id == v3.id  # type: ignore[union-attr]
    assert db.get(type(pinned), pinned.id).model_version_id == v1.id  # type: ignore[union-attr]
    rolls = db.scalars(
        select(OutboxMessage.payload).where(OutboxMessage.topic == "deployment.roll")
    ).all()
    assert sorted(p["deployment_id"] for p in rolls) == sorted(
        [str(follower.id), created.json()["id"]]
    )
    audit = db.scalars(select(AuditEvent.details).where(AuditEvent.action == "alias.move")).all()
    assert set(audit[-1]["rolled_deployments"]) == {str(follower.id), created.json()["id"]}


def test_models_sorted_by_an_evaluation_metric(client: TestClient, versions: Any) -> None:
    key, _viewer, project, (v1, v2, v3) = versions
    path = f"/v1/projects/{project.id}/models"
    best = client.get(path, params={"name": "recs", "sort": "-ndcg_at_10"}, headers=key.headers)
    assert [m["id"] for m in best.json()["items"]] == [str(v1.id), str(v2.id), str(v3.id)]
    worst = client.get(path, params={"name": "recs", "sort": "ndcg_at_10"}, headers=key.headers)
    assert [m["id"] for m in worst.json()["items"]] == [str(v2.id), str(v1.id), str(v3.id)]
    assert client.get(path, params={"sort": "ndcg_at_10"}, headers=key.headers).status_code == 422


def test_alias_moves_and_removals_are_events(client: TestClient, versions: Any) -> None:
    key, viewer, project, (v1, v2, _v3) = versions
    path = _path(project)
    assert client.put(path, json={"version": 1, "requires": GATE}, headers=key.headers).is_success
    assert client.put(path, json={"version": 2}, headers=key.headers).status_code == 409
    assert client.delete(path, headers=key.headers).status_code == 204
    listed = client.get(
        f"/v1/projects/{project.id}/events", params={"type": "alias."}, headers=viewer.headers
    )
    assert listed.status_code == 200, listed.text
    events = sorted(listed.json()["items"], key=lambda e: e["id"])
    # The refused move left no event; the move names the version, the removal what it named.
    assert [e["type"] for e in events] == ["alias.moved", "alias.deleted"]
    assert [e["subject_id"] for e in events] == [str(v1.id), str(v1.id)]
    assert events[0]["data"]["version"] == 1
    assert events[0]["data"]["requires"] == GATE
    assert events[1]["data"]["alias"] == "recs@production"
