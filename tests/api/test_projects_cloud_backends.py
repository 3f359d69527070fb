"""A project may name vertex, azureml or watsonx only once the server has that backend enabled
and configured; runs on them are checked against what the cloud needs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.domain.access import Role
from app.domain.projects.models import Project
from app.main import create_app
from app.settings import AzureMLSettings, Settings, VertexSettings, WatsonxSettings
from tests.factories import make_key, make_project

CLOUDS = ["vertex", "azureml", "watsonx"]


@pytest.fixture
def clouds_client(
    settings: Settings, session_factory: sessionmaker[Session]
) -> Iterator[TestClient]:
    """The API with all three clouds enabled and configured (static tokens)."""
    backends = settings.backends.model_copy(
        update={
            "vertex": VertexSettings(enabled=True, project="demo", access_token="t"),
            "azureml": AzureMLSettings(
                enabled=True,
                subscription_id="s",
                resource_group="rg",
                workspace="ws",
                compute="cpu",
                access_token="t",
            ),
            "watsonx": WatsonxSettings(enabled=True, space_id="space", access_token="t"),
        }
    )
    app = create_app(settings.model_copy(update={"backends": backends}), session_factory)
    with TestClient(app) as client:
        yield client


@pytest.mark.parametrize("backend", CLOUDS)
def test_a_cloud_that_is_not_enabled_is_refused_at_create(
    client: TestClient, db: Session, backend: str
) -> None:
    key = make_key(db)
    db.commit()
    r = client.post(
        "/v1/projects",
        json={"name": f"on-{backend}", "default_backend": backend},
        headers=key.headers,
    )
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "backend_unavailable"
    assert f"STRATUS_BACKENDS__{backend.upper()}__ENABLED" in r.json()["detail"]
    assert db.scalar(select(func.count()).where(Project.name == f"on-{backend}")) == 0


def test_an_enabled_cloud_without_its_settings_is_refused(
    settings: Settings, session_factory: sessionmaker[Session], db: Session
) -> None:
    backends = settings.backends.model_copy(update={"vertex": VertexSettings(enabled=True)})
    app = create_app(settings.model_copy(update={"backends": backends}), session_factory)
    key = make_key(db)
    db.commit()
    with TestClient(app) as client:
        r = client.post(
            "/v1/projects", json={"name": "half", "default_backend": "vertex"}, headers=key.headers
        )
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "STRATUS_BACKENDS__VERTEX__PROJECT" in detail
    assert "CREDENTIALS_FILE" in detail


@pytest.mark.parametrize("backend", CLOUDS)
def test_a_configured_cloud_is_accepted(
    clouds_client: TestClient, db: Session, backend: str
) -> None:
    key = make_key(db)
    db.commit()
    r = clouds_client.post(
        "/v1/projects",
        json={"name": f"on-{backend}", "default_backend": backend},
        headers=key.headers,
    )
    assert r.status_code == 201, r.text
    assert r.json()["default_backend"] == backend


def test_switching_to_a_cloud_that_is_not_enabled_changes_nothing(
    client: TestClient, db: Session
) -> None:
    owner = make_key(db)
    project = make_project(db, (owner, Role.OWNER))
    db.commit()
    r = client.patch(
        f"/v1/projects/{project.id}", json={"default_backend": "watsonx"}, headers=owner.headers
    )
    assert r.status_code == 422
    db.expire_all()
    assert db.get(Project, project.id).default_backend == "local"  # type: ignore[union-attr]


def test_runs_on_a_cloud_are_checked_against_what_it_needs(
    clouds_client: TestClient, db: Session
) -> None:
    owner = make_key(db)
    project = make_project(db, (owner, Role.OWNER), default_backend="vertex")
    db.commit()
    spec = {
        "entrypoint": "train.py",
        "source_dir": "gs://demo/code.tar.gz",
        "instance_type": "local",
        "input_channels": {"train": "/data/train"},
    }
    r = clouds_client.post(
        f"/v1/projects/{project.id}/runs", json={"name": "r", "spec": spec}, headers=owner.headers
    )
    assert r.status_code == 422, r.text
    fields = {tuple(e["loc"][1:]) for e in r.json()["errors"]}
    assert {
        ("spec", "instance_type"),
        ("spec", "image"),
        ("spec", "input_channels", "train"),
    } <= fields
