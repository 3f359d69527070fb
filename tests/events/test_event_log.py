"""The event log: state changes become events in the same transaction, listed per project."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.domain.access import Role
from app.domain.deployments import service as deployments
from app.domain.deployments.states import DeploymentStatus
from app.domain.events.models import Event
from app.domain.optimizer import service as optimizer
from app.domain.optimizer.models import OptimizerDecision
from app.domain.runs import service as runs
from app.domain.runs.states import RunStatus
from tests.api.test_optimizer import POLICY, overloaded
from tests.factories import (
    LOCAL_SPEC,
    make_deployment,
    make_key,
    make_model_version,
    make_project,
    make_run,
)


def _types(db: Session, project_id: Any) -> list[str]:
    stmt = select(Event.type).where(Event.project_id == project_id).order_by(Event.id)
    return list(db.scalars(stmt))


def test_run_lifecycle_is_recorded_with_the_run_as_the_api_shows_it(
    client: TestClient, db: Session, owner: Any
) -> None:
    key, project = owner
    spec = {**LOCAL_SPEC, "environment": {"TOKEN": "s3cr3t"}}
    run = client.post(
        f"/v1/projects/{project.id}/runs", json={"name": "r", "spec": spec}, headers=key.headers
    ).json()
    stopped = client.post(f"/v1/runs/{run['id']}/stop", headers=key.headers)
    assert stopped.status_code == 202, stopped.text

    page = client.get(f"/v1/projects/{project.id}/events", headers=key.headers).json()
    assert [e["type"] for e in page["items"]] == ["run.stopped", "run.created"]
    newest, created = page["items"]
    assert newest["id"] > created["id"]
    assert newest["subject_id"] == run["id"]
    assert newest["project_id"] == str(project.id)
    assert newest["data"]["status"] == "stopped"
    assert created["data"]["status"] == "pending"
    # Every member may read events, so the environment's values are masked in them.
    assert created["data"]["spec"]["environment"] == {"TOKEN": "***"}


def test_a_refused_change_records_no_event(client: TestClient, db: Session, owner: Any) -> None:
    key, project = owner
    bad = {"name": "r", "spec": {**LOCAL_SPEC, "instance_count": 0}}
    r = client.post(f"/v1/projects/{project.id}/runs", json=bad, headers=key.headers)
    assert r.status_code == 422
    assert _types(db, project.id) == []


def test_transitions_emit_one_event_each_and_stale_ones_none(db: Session, owner: Any) -> None:
    _, project = owner
    run = make_run(db, project, status=RunStatus.PENDING)
    assert runs.transition(db, run.id, RunStatus.PENDING, RunStatus.SUBMITTING)
    assert runs.transition(db, run.id, RunStatus.SUBMITTING, RunStatus.RUNNING)
    assert not runs.transition(db, run.id, RunStatus.SUBMITTING, RunStatus.RUNNING)  # stale
    assert runs.transition(db, run.id, RunStatus.RUNNING, RunStatus.FAILED)
    assert _types(db, project.id) == ["run.submitted", "run.running", "run.failed"]

    model = make_model_version(db, project)
    deployment = make_deployment(db, project, model, status=DeploymentStatus.CREATING)
    for expected, target in [
        (DeploymentStatus.CREATING, DeploymentStatus.IN_SERVICE),
        (DeploymentStatus.IN_SERVICE, DeploymentStatus.UPDATING),
        (DeploymentStatus.UPDATING, DeploymentStatus.FAILED),
        (DeploymentStatus.FAILED, DeploymentStatus.DELETING),
        (DeploymentStatus.DELETING, DeploymentStatus.DELETED),
    ]:
        assert deployments.transition(db, deployment.id, expected, target)
    assert _types(db, project.id)[3:] == [
        "deployment.in_service",
        "deployment.updating",
        "deployment.failed",
        "deployment.deleted",
    ]
    last = db.scalars(select(Event).order_by(Event.id.desc()).limit(1)).one()
    assert last.data["status"] == "deleted"
    assert last.data["current_instances"] == 0


def test_model_version_created_event(client: TestClient, owner: Any, tmp_path: Any) -> None:
    key, project = owner
    artifact = tmp_path / "model"
    artifact.mkdir()
    body = {"name": "recommender", "artifact_uri": f"file://{artifact}"}
    r = client.post(f"/v1/projects/{project.id}/models", json=body, headers=key.headers)
    assert r.status_code == 201, r.text
    page = client.get(
        f"/v1/projects/{project.id}/events", params={"type": "model_version."}, headers=key.headers
    ).json()
    assert [e["type"] for e in page["items"]] == ["model_version.created"]
    assert page["items"][0]["data"] == r.json()


def test_list_filters_pages_and_isolates(client: TestClient, db: Session, owner: Any) -> None:
    key, project = owner
    first = make_run(db, project, status=RunStatus.PENDING)
    second = make_run(db, project, status=RunStatus.PENDING)
    for run in (first, second):
        runs.transition(db, run.id, RunStatus.PENDING, RunStatus.STOPPED)
    db.commit()
    url = f"/v1/projects/{project.id}/events"
    by_subject = client.get(url, params={"subject_id": str(first.id)}, headers=key.headers)
    assert [e["subject_id"] for e in by_subject.json()["items"]] == [str(first.id)]
    one = client.get(url, params={"limit": 1}, headers=key.headers).json()
    assert one["items"][0]["subject_id"] == str(second.id)
    rest = client.get(url, params={"cursor": one["next_cursor"]}, headers=key.headers).json()
    assert [e["subject_id"] for e in rest["items"]] == [str(first.id)]
    assert client.get(url, params={"type": "deployment."}, headers=key.headers).json() == {
        "items": [],
        "next_cursor": None,
    }
    stranger = make_key(db)
    db.commit()
    assert client.get(url, headers=stranger.headers).status_code == 404


def test_a_refusal_over_budget_is_recorded_though_the_request_rolls_back(
    client: TestClient, db: Session
) -> None:
    key = make_key(db)
    project = make_project(db, (key, Role.EDITOR), budget_usd=Decimal("0.10"))
    db.commit()
    spec = {"image": "x", "instance_type": "ml.m5.xlarge", "instance_count": 1}
    body = {"name": "pricey", "backend": "sagemaker", "spec": spec}
    r = client.post(f"/v1/projects/{project.id}/runs", json=body, headers=key.headers)
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "budget_exceeded"
    assert _types(db, project.id) == ["budget.exceeded"]  # and no run.created
    event = db.scalars(select(Event).where(Event.project_id == project.id)).one()
    assert event.subject_id == project.id
    assert event.data["refused"] == "This run"
    assert event.data["budget_usd"] == 0.1
    assert event.data["projected_usd"] == pytest.approx(0.23 * 24)  # a day at most


def test_an_optimizer_scale_out_is_recorded_with_its_reason(db: Session) -> None:
    project = make_project(db)
    deployment = make_deployment(
        db,
        project,
        status="in_service",
        desired_instances=1,
        current_instances=1,
        scaling_policy=POLICY,
    )
    overloaded(db, deployment)
    assert optimizer.optimize(db, deployment.id, utcnow())
    decision = db.scalars(select(OptimizerDecision)).one()
    assert _types(db, project.id) == ["deployment.scaled", "deployment.updating"]
    scaled = db.scalars(select(Event).where(Event.type == "deployment.scaled")).one()
    assert scaled.subject_id == deployment.id
    assert scaled.data["previous_instances"] == 1
    assert scaled.data["desired_instances"] == decision.desired_instances > 1
    assert scaled.data["reason"] == decision.reason
    assert scaled.data["mode"] == decision.mode
