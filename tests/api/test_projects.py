"""Projects and memberships through the HTTP API, on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.domain.access import Role
from app.domain.projects.models import Project
from app.domain.projects.repository import backend_option
from app.main import create_app
from app.settings import SageMakerSettings, Settings
from tests.factories import make_key, make_project


def test_create_project_makes_caller_owner_and_audits(client: TestClient, db: Session) -> None:
    key = make_key(db)
    db.commit()
    r = client.post("/v1/projects", json={"name": "recs", "description": "d"}, headers=key.headers)
    assert r.status_code == 201, r.text
    project = r.json()
    assert project["name"] == "recs"
    members = client.get(f"/v1/projects/{project['id']}/members", headers=key.headers).json()
    assert [(m["principal_id"], m["role"]) for m in members["items"]] == [(str(key.id), "owner")]
    events = client.get(f"/v1/projects/{project['id']}/audit-events", headers=key.headers).json()
    assert [e["action"] for e in events["items"]] == ["project.create"]
    assert events["items"][0]["actor_id"] == str(key.id)


def test_duplicate_name_is_409_and_stores_nothing(client: TestClient, db: Session) -> None:
    key = make_key(db)
    make_project(db, (key, Role.OWNER), name="taken")
    db.commit()
    r = client.post("/v1/projects", json={"name": "taken"}, headers=key.headers)
    assert r.status_code == 409
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "name_taken"
    assert len(client.get("/v1/projects", headers=key.headers).json()["items"]) == 1


def test_last_owner_cannot_leave(client: TestClient, db: Session) -> None:
    owner = make_key(db)
    project = make_project(db, (owner, Role.OWNER))
    db.commit()
    url = f"/v1/projects/{project.id}/members/{owner.id}"
    assert client.delete(url, headers=owner.headers).status_code == 409
    assert client.put(url, json={"role": "viewer"}, headers=owner.headers).status_code == 409


def test_cursor_pagination_walks_every_project_once(client: TestClient, db: Session) -> None:
    key = make_key(db)
    made = {make_project(db, (key, Role.VIEWER)).id for _ in range(7)}
    db.commit()
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/projects", params=params, headers=key.headers).json()
        seen += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(str(i) for i in made)
    assert client.get("/v1/projects?cursor=@@", headers=key.headers).status_code == 400


ALLOWED = "arn:aws:iam::123456789012:role/team-a"
SERVER_ROLE = "arn:aws:iam::123456789012:role/stratus-default"
OTHER = "arn:aws:iam::123456789012:role/admin"


@pytest.fixture
def roles_client(
    settings: Settings, session_factory: sessionmaker[Session]
) -> Iterator[TestClient]:
    """The API with an allow-list of one role, and a server default role."""
    sagemaker = SageMakerSettings(role_arn=SERVER_ROLE, allowed_role_arns=[ALLOWED])
    backends = settings.backends.model_copy(update={"sagemaker": sagemaker})
    app = create_app(settings.model_copy(update={"backends": backends}), session_factory)
    with TestClient(app) as client:
        yield client


def test_owners_set_the_projects_cloud_identity(roles_client: TestClient, db: Session) -> None:
    owner, editor, viewer = make_key(db), make_key(db), make_key(db)
    project = make_project(db, (owner, Role.OWNER), (editor, Role.EDITOR), (viewer, Role.VIEWER))
    db.commit()
    url = f"/v1/projects/{project.id}"
    config = {"sagemaker": {"role_arn": ALLOWED, "s3_prefixes": ["s3://bucket/team-a/"]}}
    r = roles_client.patch(url, json={"backend_config": config}, headers=owner.headers)
    assert r.status_code == 200, r.text
    assert r.json()["backend_config"] == config
    # Members see it; the stored row is what the workers read.
    assert roles_client.get(url, headers=viewer.headers).json()["backend_config"] == config
    db.refresh(project)
    assert project.backend_config == config
    assert backend_option(db, project.id, "sagemaker", "role_arn") == ALLOWED
    # The server's own role is always allowed.
    server = {"sagemaker": {"role_arn": SERVER_ROLE}}
    r = roles_client.patch(url, json={"backend_config": server}, headers=owner.headers)
    assert r.status_code == 200, r.text
    # Editors may not choose the identity their runs assume.
    r = roles_client.patch(url, json={"backend_config": config}, headers=editor.headers)
    assert r.status_code == 403
    db.refresh(project)
    assert project.backend_config == {"sagemaker": {"role_arn": SERVER_ROLE, "s3_prefixes": []}}
    r = roles_client.patch(url, json={"backend_config": None}, headers=owner.headers)
    assert r.json()["backend_config"] == {"sagemaker": None}


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"sagemaker": {"role_arn": OTHER}}, "ALLOWED_ROLE_ARNS"),
        ({"sagemaker": {"role_arn": "admin"}}, "role_arn"),
        ({"sagemaker": {"s3_prefixes": ["s3://bucket/no-slash"]}}, "s3_prefixes"),
        ({"sagemaker": {"s3_prefixes": ["s3://Bucket/"]}}, "s3_prefixes"),
        ({"sagemaker": {"s3_prefixes": ["s3://bucket/a/../b/"]}}, "s3_prefixes"),
        ({"sagemaker": {"s3_prefixes": ["/srv/data/"]}}, "s3_prefixes"),
        ({"sagemaker": {"region": "eu-west-1"}}, "region"),
        ({"local": {"host_roots": ["/"]}}, "local"),
    ],
)
def test_bad_backend_config_is_422_and_changes_nothing(
    roles_client: TestClient, db: Session, config: dict[str, Any], fragment: str
) -> None:
    owner = make_key(db)
    project = make_project(db, (owner, Role.OWNER))
    db.commit()
    r = roles_client.patch(
        f"/v1/projects/{project.id}", json={"backend_config": config}, headers=owner.headers
    )
    assert r.status_code == 422, r.text
    assert fragment in r.text
    db.refresh(project)
    assert project.backend_config == {}
    created = roles_client.post(
        "/v1/projects", json={"name": "new-one", "backend_config": config}, headers=owner.headers
    )
    assert created.status_code == 422
    assert db.scalar(select(func.count()).select_from(Project)) == 1


def test_a_creator_may_set_an_allowed_role(roles_client: TestClient, db: Session) -> None:
    key = make_key(db)
    db.commit()
    config = {"sagemaker": {"role_arn": ALLOWED, "s3_prefixes": ["s3://bucket/"]}}
    r = roles_client.post(
        "/v1/projects", json={"name": "mine", "backend_config": config}, headers=key.headers
    )
    assert r.status_code == 201, r.text
    assert r.json()["backend_config"] == config
