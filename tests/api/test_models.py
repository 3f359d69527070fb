"""Model versions through the HTTP API and from finished runs, on PostgreSQL."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.domain.access import Role
from app.domain.audit.models import AuditEvent
from app.domain.model_versions import repository, service
from app.domain.model_versions.models import ModelVersion
from app.domain.model_versions.schemas import ModelVersionCreate
from app.errors import Conflict
from app.settings import Settings
from tests.factories import Key, make_key, make_model_version, make_project, make_run


def _count(db: Session, model: Any) -> int:
    return db.scalar(select(func.count()).select_from(model)) or 0


PREFIX = "s3://models-bucket/recs/"


@pytest.fixture
def editor_project(db: Session) -> Any:
    key = make_key(db)
    project = make_project(
        db, (key, Role.EDITOR), backend_config={"sagemaker": {"s3_prefixes": [PREFIX]}}
    )
    db.commit()
    return key, project


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    """Model artifacts on this host, under the test settings' host roots."""
    for name in ("recs", "recs-2", "ranker"):
        (tmp_path / "models" / name).mkdir(parents=True)
    return tmp_path / "models"


def _register(client: TestClient, key: Key, project_id: Any, **body: Any) -> Any:
    body = {"name": "recs", "artifact_uri": "s3://models-bucket/recs/model.tar.gz"} | body
    return client.post(f"/v1/projects/{project_id}/models", json=body, headers=key.headers)


def test_register_numbers_versions_per_name_and_audits(
    client: TestClient, db: Session, editor_project: Any, models_dir: Path
) -> None:
    key, project = editor_project
    first = _register(client, key, project.id, framework="pytorch", metrics={"loss": 0.25})
    assert first.status_code == 201, first.text
    second = _register(client, key, project.id, artifact_uri=(models_dir / "recs-2").as_uri())
    other = _register(
        client, key, project.id, name="ranker", artifact_uri=str(models_dir / "ranker")
    )
    assert [r.json()["version"] for r in (first, second, other)] == [1, 2, 1]
    body = first.json()
    assert body["framework"] == "pytorch"
    assert body["metrics"] == {"loss": 0.25}
    assert body["created_by"] == str(key.id)
    assert body["source_run_id"] is None
    got = client.get(f"/v1/models/{body['id']}", headers=key.headers)
    assert got.status_code == 200
    assert got.json() == body
    actions = db.scalars(select(AuditEvent.action).where(AuditEvent.project_id == project.id))
    assert list(actions) == ["model_version.create"] * 3


def test_list_is_newest_first_filters_by_name_and_pages(
    client: TestClient, db: Session, editor_project: Any
) -> None:
    key, project = editor_project
    for name in ["recs", "recs", "ranker", "recs"]:
        make_model_version(db, project, name=name)
    db.commit()
    url = f"/v1/projects/{project.id}/models"
    recs = client.get(url, params={"name": "recs"}, headers=key.headers).json()
    assert [m["version"] for m in recs["items"]] == [3, 2, 1]
    first = client.get(url, params={"limit": 3}, headers=key.headers).json()
    rest = client.get(url, params={"cursor": first["next_cursor"]}, headers=key.headers).json()
    assert len(first["items"]) == 3
    assert len(rest["items"]) == 1
    assert rest["next_cursor"] is None


@pytest.mark.parametrize(
    "change",
    [
        {"artifact_uri": "models/recs.tar.gz"},
        {"artifact_uri": "https://example.com/model.tar.gz"},
        {"artifact_uri": "s3://bucket-only"},
        {"artifact_uri": "/srv/models/../../etc/passwd"},
        {"artifact_uri": "s3://models-bucket/other/model.tar.gz"},
        {"artifact_uri": "s3://models-bucket/recs"},
        {"artifact_uri": "/srv/models/recs"},
        {"artifact_uri": "file:///etc/passwd"},
        {"name": "has space"},
        {"name": "x" * 101},
        {"metrics": {"bad key!": 1.0}},
        {"framework": "PyTorch 2"},
        {"unknown": 1},
    ],
)
def test_invalid_registration_is_422_and_stores_nothing(
    client: TestClient, db: Session, editor_project: Any, change: dict[str, Any]
) -> None:
    key, project = editor_project
    r = _register(client, key, project.id, **change)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert _count(db, ModelVersion) == 0


def test_non_finite_metric_is_422(client: TestClient, db: Session, editor_project: Any) -> None:
    key, project = editor_project
    body = {"name": "recs", "artifact_uri": "/srv/m", "metrics": {"loss": float("nan")}}
    r = client.post(
        f"/v1/projects/{project.id}/models",
        content=json.dumps(body),
        headers=key.headers | {"content-type": "application/json"},
    )
    assert r.status_code == 422
    assert _count(db, ModelVersion) == 0


def test_other_projects_model_answers_like_a_missing_one(
    client: TestClient, db: Session, editor_project: Any
) -> None:
    key, _ = editor_project
    stranger = make_key(db)
    theirs = make_model_version(db, make_project(db, (stranger, Role.OWNER)))
    db.commit()
    hidden = client.get(f"/v1/models/{theirs.id}", headers=key.headers)
    missing = client.get(f"/v1/models/{uuid.uuid4()}", headers=key.headers)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.headers["content-type"] == "application/problem+json"
    assert hidden.json()["code"] == missing.json()["code"] == "not_found"
    listing = client.get(f"/v1/projects/{theirs.project_id}/models", headers=key.headers)
    assert listing.status_code == 404
    assert _register(client, key, theirs.project_id).status_code == 404


def test_viewer_reads_but_cannot_register(client: TestClient, db: Session) -> None:
    viewer = make_key(db)
    project = make_project(db, (viewer, Role.VIEWER))
    model = make_model_version(db, project)
    db.commit()
    assert client.get(f"/v1/models/{model.id}", headers=viewer.headers).status_code == 200
    r = _register(client, viewer, project.id)
    assert r.status_code == 403
    assert r.json()["code"] == "forbidden"
    assert _count(db, ModelVersion) == 1


def test_idempotent_retry_replays_and_stores_once(
    client: TestClient, db: Session, editor_project: Any, models_dir: Path
) -> None:
    key, project = editor_project
    headers = key.headers | {"Idempotency-Key": "register-recs-1"}
    body = {"name": "recs", "artifact_uri": str(models_dir / "recs")}
    url = f"/v1/projects/{project.id}/models"
    first = client.post(url, json=body, headers=headers)
    again = client.post(url, json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert _count(db, ModelVersion) == 1


def test_create_from_run_is_idempotent(db: Session, editor_project: Any) -> None:
    _, project = editor_project
    run = make_run(
        db,
        project,
        name="recs",
        status="completed",
        spec={"entrypoint": "train.py", "framework": "sklearn"},
        final_metrics={"loss": 0.5, "auc": 0.9},
        artifact_uri="file:///srv/runs/recs/model",
    )
    make_model_version(db, project, name="recs")
    created = service.create_from_run(db, run)
    again = service.create_from_run(db, run)
    assert again == created
    assert created.version == 2
    assert created.source_run_id == run.id
    assert created.framework == "sklearn"
    assert created.metrics == {"loss": 0.5, "auc": 0.9}
    assert created.artifact_uri == "file:///srv/runs/recs/model"
    assert _count(db, ModelVersion) == 2
    events = db.scalars(select(AuditEvent).where(AuditEvent.object_id == str(created.id))).all()
    assert [(e.action, e.actor_id) for e in events] == [("model_version.create", None)]


def test_create_from_run_without_artifact_is_refused(db: Session, editor_project: Any) -> None:
    _, project = editor_project
    run = make_run(db, project, status="completed")
    with pytest.raises(Conflict):
        service.create_from_run(db, run)
    assert _count(db, ModelVersion) == 0


def test_losing_the_version_race_retries_with_the_next_number(
    db: Session,
    editor_project: Any,
    monkeypatch: pytest.MonkeyPatch,
    settings: Settings,
    models_dir: Path,
) -> None:
    key, project = editor_project
    make_model_version(db, project, name="recs")
    real = repository.next_version
    stale = iter([1])  # what a concurrent registration saw before the other committed

    def racing(session: Session, project_id: uuid.UUID, name: str) -> int:
        return next(stale, None) or real(session, project_id, name)

    monkeypatch.setattr(repository, "next_version", racing)
    data = ModelVersionCreate(name="recs", artifact_uri=str(models_dir / "recs"))
    created = service.register_model(db, key.principal, project.id, data, settings)
    assert created.version == 2
    assert _count(db, ModelVersion) == 2
