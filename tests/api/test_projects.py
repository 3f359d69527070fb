"""Projects and memberships through the HTTP API, on PostgreSQL."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.domain.access import Role
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
