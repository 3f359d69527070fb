"""Deployments through the HTTP API and the worker-facing service, on PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.domain.access import Role
from app.domain.audit.models import AuditEvent
from app.domain.deployments import service
from app.domain.deployments.models import Deployment
from app.domain.deployments.states import ALLOWED, DeploymentStatus
from app.domain.optimizer import service as optimizer_service
from app.domain.outbox.models import OutboxMessage
from app.errors import Conflict
from tests.factories import make_deployment, make_key, make_model_version, make_project

S = DeploymentStatus


def _count(db: Session, model: Any) -> int:
    return db.scalar(select(func.count()).select_from(model)) or 0


def _outbox(db: Session) -> list[tuple[str, dict[str, Any]]]:
    return [(m.topic, m.payload) for m in db.scalars(select(OutboxMessage).order_by("id"))]


@pytest.fixture
def setup(db: Session) -> Any:
    """An editor, a viewer, their project and a model version in it."""
    editor, viewer = make_key(db), make_key(db)
    project = make_project(db, (editor, Role.EDITOR), (viewer, Role.VIEWER))
    model = make_model_version(db, project)
    db.commit()
    return editor, viewer, project, model


def _create(client: TestClient, setup: Any, **body: Any) -> Any:
    editor, _, project, model = setup
    body = {"name": "recs-prod", "model_version_id": str(model.id)} | body
    return client.post(f"/v1/projects/{project.id}/deployments", json=body, headers=editor.headers)


def _in_service(db: Session, deployment: Deployment) -> None:
    assert service.transition(db, deployment.id, S.CREATING, S.IN_SERVICE, current_instances=1)
    db.commit()


def test_create_writes_row_outbox_and_audit_together(
    client: TestClient, db: Session, setup: Any
) -> None:
    editor, _, project, model = setup
    policy = {"optimizer_enabled": True, "latency_slo_ms": 150}
    r = _create(client, setup, desired_instances=2, scaling_policy=policy)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "creating"
    assert body["backend"] == "local"
    assert body["instance_type"] == "local"
    assert (body["desired_instances"], body["current_instances"]) == (2, 0)
    assert (body["min_instances"], body["max_instances"]) == (1, 4)
    assert body["scaling_policy"] == {
        "optimizer_enabled": True,
        "latency_slo_ms": 150.0,
        "headroom": 0.2,
        "cost_weight": 0.5,
        "scale_in_cooldown_s": 300,
        "scale_out_cooldown_s": 60,
        "max_step": 2,
        "fallback_target_rps": None,
    }
    assert _outbox(db) == [("deployment.create", {"deployment_id": body["id"]})]
    events = db.scalars(select(AuditEvent).where(AuditEvent.object_id == body["id"])).all()
    assert [(e.action, e.actor_id, e.project_id) for e in events] == [
        ("deployment.create", editor.id, project.id)
    ]
    got = client.get(f"/v1/deployments/{body['id']}", headers=editor.headers)
    assert got.json() == body
    assert body["model_version_id"] == str(model.id)


def test_sagemaker_takes_ml_instance_types(client: TestClient, db: Session, setup: Any) -> None:
    r = _create(client, setup, backend="sagemaker", instance_type="ml.m5.large")
    assert r.status_code == 201, r.text
    assert r.json()["backend"] == "sagemaker"


def test_backend_defaults_to_the_projects(client: TestClient, db: Session) -> None:
    editor = make_key(db)
    project = make_project(db, (editor, Role.EDITOR), default_backend="sagemaker")
    model = make_model_version(db, project)
    db.commit()
    url = f"/v1/projects/{project.id}/deployments"
    body = {"name": "sm", "model_version_id": str(model.id)}
    missing_type = client.post(url, json=body, headers=editor.headers)
    assert missing_type.status_code == 422
    assert "ml.m5.large" in missing_type.json()["detail"]
    r = client.post(url, json=body | {"instance_type": "ml.c5.xlarge"}, headers=editor.headers)
    assert r.status_code == 201, r.text
    assert r.json()["backend"] == "sagemaker"


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"min_instances": 3, "max_instances": 2, "desired_instances": 2}, 422),
        ({"desired_instances": 5}, 422),
        ({"max_instances": 101}, 422),
        ({"desired_instances": 0}, 422),
        ({"backend": "sagemaker", "instance_type": "m5.large"}, 422),
        ({"backend": "sagemaker", "instance_type": "local"}, 422),
        ({"instance_type": "ml.m5.large"}, 422),
        ({"name": "Not A Slug"}, 422),
        ({"scaling_policy": {"headroom": 0.95}}, 422),
        ({"scaling_policy": {"latency_slo_ms": 0}}, 422),
        ({"model_version_id": str(uuid.uuid4())}, 404),
    ],
)
def test_invalid_create_is_a_problem_and_stores_nothing(
    client: TestClient, db: Session, setup: Any, change: dict[str, Any], status: int
) -> None:
    r = _create(client, setup, **change)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert _count(db, Deployment) == 0
    assert _count(db, OutboxMessage) == 0


def test_model_of_another_project_is_404_like_a_missing_one(
    client: TestClient, db: Session, setup: Any
) -> None:
    theirs = make_model_version(db, make_project(db, (make_key(db), Role.OWNER)))
    db.commit()
    r = _create(client, setup, model_version_id=str(theirs.id))
    assert r.status_code == 404
    assert r.json()["detail"] == f"Model version {theirs.id} not found."
    assert _count(db, Deployment) == 0
    assert _count(db, OutboxMessage) == 0


def test_duplicate_live_name_is_409_until_deleted(
    client: TestClient, db: Session, setup: Any
) -> None:
    first = _create(client, setup)
    assert first.status_code == 201
    again = _create(client, setup)
    assert again.status_code == 409
    assert again.json()["code"] == "name_taken"
    assert _count(db, Deployment) == 1
    gone = uuid.UUID(first.json()["id"])
    assert service.transition(db, gone, S.CREATING, S.DELETING)
    assert service.transition(db, gone, S.DELETING, S.DELETED)
    db.commit()
    assert _create(client, setup).status_code == 201


def test_patch_in_service_resizes_through_updating(
    client: TestClient, db: Session, setup: Any
) -> None:
    editor, _, project, model = setup
    deployment = make_deployment(db, project, model)
    _in_service(db, deployment)
    body = {"desired_instances": 3, "scaling_policy": {"optimizer_enabled": True}}
    r = client.patch(f"/v1/deployments/{deployment.id}", json=body, headers=editor.headers)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["status"] == "updating"
    assert got["desired_instances"] == 3
    assert got["current_instances"] == 1
    assert got["scaling_policy"]["optimizer_enabled"] is True
    assert got["scaling_policy"]["latency_slo_ms"] == 200.0  # untouched fields are kept
    assert _outbox(db) == [("deployment.update", {"deployment_id": str(deployment.id)})]


def test_patch_while_creating_stores_the_latest_desired_only(
    client: TestClient, db: Session, setup: Any
) -> None:
    editor, _, project, model = setup
    deployment = make_deployment(db, project, model)
    db.commit()
    url = f"/v1/deployments/{deployment.id}"
    r = client.patch(url, json={"desired_instances": 4}, headers=editor.headers)
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["desired_instances"]) == ("creating", 4)
    assert _outbox(db) == []


def _patch_policy_in_service(
    client: TestClient, db: Session, setup: Any, policy: dict[str, Any]
) -> tuple[Deployment, Any]:
    """A new in-service deployment, and the 200 answer to PATCHing ``policy`` into it."""
    editor, _, project, model = setup
    deployment = make_deployment(db, project, model)
    _in_service(db, deployment)
    body = {"scaling_policy": policy}
    r = client.patch(f"/v1/deployments/{deployment.id}", json=body, headers=editor.headers)
    assert r.status_code == 200, r.text
    return deployment, r


def test_patch_policy_only_on_in_service_needs_no_resize(
    client: TestClient, db: Session, setup: Any
) -> None:
    deployment, r = _patch_policy_in_service(client, db, setup, {"cost_weight": 0.8})
    assert r.json()["status"] == "in_service"
    assert r.json()["scaling_policy"]["cost_weight"] == 0.8
    assert _outbox(db) == []


def test_a_load_tested_target_reaches_the_optimizer(
    client: TestClient, db: Session, setup: Any
) -> None:
    editor = setup[0]
    deployment, r = _patch_policy_in_service(client, db, setup, {"fallback_target_rps": 33.5})
    assert r.json()["scaling_policy"]["fallback_target_rps"] == 33.5
    db.expire_all()
    stored = db.get(Deployment, deployment.id)
    assert stored is not None
    assert optimizer_service.policy_for(stored).fallback_target_rps == 33.5
    # Another field's patch keeps it; a non-positive target is refused and changes nothing.
    r = client.patch(
        f"/v1/deployments/{deployment.id}",
        json={"scaling_policy": {"cost_weight": 0.7}},
        headers=editor.headers,
    )
    assert r.json()["scaling_policy"]["fallback_target_rps"] == 33.5
    for bad in (0, -1, "fast"):
        r = client.patch(
            f"/v1/deployments/{deployment.id}",
            json={"scaling_policy": {"fallback_target_rps": bad}},
            headers=editor.headers,
        )
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"
    assert (
        client.get(f"/v1/deployments/{deployment.id}", headers=editor.headers).json()[
            "scaling_policy"
        ]["fallback_target_rps"]
        == 33.5
    )


@pytest.mark.parametrize(
    "body",
    [
        {"max_instances": 1, "desired_instances": 2},
        {"min_instances": 3},
        {"desired_instances": 0},
        {"scaling_policy": {"max_step": 0}},
        {"name": "renamed"},
    ],
)
def test_patch_is_validated_after_merging(
    client: TestClient, db: Session, setup: Any, body: dict[str, Any]
) -> None:
    editor, _, project, model = setup
    deployment = make_deployment(db, project, model, desired_instances=2, max_instances=2)
    _in_service(db, deployment)
    r = client.patch(f"/v1/deployments/{deployment.id}", json=body, headers=editor.headers)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    db.expire_all()
    stored = db.get(Deployment, deployment.id)
    assert stored is not None
    assert (stored.status, stored.desired_instances, stored.max_instances) == ("in_service", 2, 2)
    assert _outbox(db) == []


@pytest.mark.parametrize("status", ["deleting", "deleted", "failed"])
def test_patch_after_delete_or_failure_is_409(
    client: TestClient, db: Session, setup: Any, status: str
) -> None:
    editor, _, project, model = setup
    deployment = make_deployment(db, project, model, status=status)
    db.commit()
    url = f"/v1/deployments/{deployment.id}"
    r = client.patch(url, json={"desired_instances": 2}, headers=editor.headers)
    assert r.status_code == 409
    assert r.headers["content-type"] == "application/problem+json"


def test_delete_is_accepted_once_and_repeats_quietly(
    client: TestClient, db: Session, setup: Any
) -> None:
    editor, _, project, model = setup
    deployment = make_deployment(db, project, model)
    _in_service(db, deployment)
    url = f"/v1/deployments/{deployment.id}"
    first = client.delete(url, headers=editor.headers)
    assert first.status_code == 202
    assert first.json()["status"] == "deleting"
    again = client.delete(url, headers=editor.headers)
    assert again.status_code == 202
    assert again.json()["status"] == "deleting"
    assert _outbox(db) == [("deployment.delete", {"deployment_id": str(deployment.id)})]
    actions = db.scalars(
        select(AuditEvent.action).where(AuditEvent.object_id == str(deployment.id))
    )
    assert list(actions) == ["deployment.delete"]


def test_viewer_reads_but_cannot_write(client: TestClient, db: Session, setup: Any) -> None:
    _, viewer, project, model = setup
    deployment = make_deployment(db, project, model)
    db.commit()
    url = f"/v1/deployments/{deployment.id}"
    assert client.get(url, headers=viewer.headers).status_code == 200
    body = {"name": "v", "model_version_id": str(model.id)}
    writes = [
        client.post(f"/v1/projects/{project.id}/deployments", json=body, headers=viewer.headers),
        client.patch(url, json={"desired_instances": 2}, headers=viewer.headers),
        client.delete(url, headers=viewer.headers),
    ]
    assert [w.status_code for w in writes] == [403, 403, 403]
    assert _count(db, Deployment) == 1
    assert _outbox(db) == []


def test_other_projects_deployment_is_404(client: TestClient, db: Session, setup: Any) -> None:
    editor = setup[0]
    theirs = make_deployment(db, make_project(db, (make_key(db), Role.OWNER)))
    db.commit()
    url = f"/v1/deployments/{theirs.id}"
    responses = [
        client.get(url, headers=editor.headers),
        client.patch(url, json={"desired_instances": 2}, headers=editor.headers),
        client.delete(url, headers=editor.headers),
        client.get(f"/v1/deployments/{uuid.uuid4()}", headers=editor.headers),
    ]
    assert [r.status_code for r in responses] == [404, 404, 404, 404]
    assert _outbox(db) == []


def test_list_filters_by_status_and_pages(client: TestClient, db: Session, setup: Any) -> None:
    editor, _, project, model = setup
    for status in ["creating", "in_service", "in_service", "failed", "deleted"]:
        make_deployment(db, project, model, status=status)
    db.commit()
    url = f"/v1/projects/{project.id}/deployments"
    live = client.get(url, params={"status": "in_service"}, headers=editor.headers).json()
    assert [d["status"] for d in live["items"]] == ["in_service", "in_service"]
    first = client.get(url, params={"limit": 3}, headers=editor.headers).json()
    rest = client.get(url, params={"cursor": first["next_cursor"]}, headers=editor.headers).json()
    assert len(first["items"]) + len(rest["items"]) == 5
    assert client.get(url, params={"status": "bogus"}, headers=editor.headers).status_code == 422


def test_transition_is_guarded_and_follows_the_state_machine(db: Session, setup: Any) -> None:
    _, _, project, model = setup
    deployment = make_deployment(db, project, model)
    service.record_backend_unavailable(db, deployment.id, "endpoint quota exhausted")
    db.flush()
    db.refresh(deployment)
    assert (deployment.status, deployment.status_reason) == ("creating", "endpoint quota exhausted")
    assert service.transition(db, deployment.id, S.CREATING, S.IN_SERVICE, current_instances=1)
    # A second writer that still believes the deployment is creating is told it is stale.
    assert not service.transition(db, deployment.id, S.CREATING, S.FAILED)
    with pytest.raises(Conflict):
        service.transition(db, deployment.id, S.IN_SERVICE, S.CREATING)
    assert service.transition(db, deployment.id, S.IN_SERVICE, S.DELETING)
    assert service.transition(db, deployment.id, S.DELETING, S.DELETED)
    db.refresh(deployment)
    assert deployment.status == "deleted"
    assert deployment.status_reason is None
    assert deployment.current_instances == 0


def test_every_state_is_reachable_and_only_deleted_is_final() -> None:
    assert [s for s, nxt in ALLOWED.items() if not nxt] == [S.DELETED]
    reachable = {S.CREATING}
    frontier = [S.CREATING]
    while frontier:
        for nxt in ALLOWED[frontier.pop()]:
            if nxt not in reachable:
                reachable.add(nxt)
                frontier.append(nxt)
    assert reachable == set(DeploymentStatus)
