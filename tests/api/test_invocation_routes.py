"""The invocation path's route cache answers as the database would, within its bounds: another
project's key 404, a viewer 403, a revoked key 401 at once (revoked through this process), a
removed member 404 once the route's TTL has passed; and the request checks (NUL bytes, body
size) and metrics apply to the requests it answers as to any."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy.orm import Session, sessionmaker

from app.api.fast_invoke import ROUTE
from app.domain.access import Role
from app.domain.api_keys.service import hash_secret
from app.domain.deployments.route_cache import routes
from app.main import create_app
from app.settings import Settings
from tests.factories import PEPPER, Key, make_deployment, make_key, make_project

TTL_S = 0.3
BODY = {"user": 7, "k": 10}


@pytest.fixture
def api(settings: Settings, session_factory: sessionmaker[Session]) -> Iterator[TestClient]:
    short = settings.model_copy(
        update={"serving": settings.serving.model_copy(update={"route_ttl_s": TTL_S})}
    )
    routes.clear()
    with TestClient(create_app(short, session_factory)) as client:
        yield client
    routes.clear()


def _deployment(db: Session, *members: tuple[Key, Role]) -> uuid.UUID:
    project = make_project(db, *members)
    # A backend this server does not run: the route is confirmed (and remembered) before the
    # call to the model, which then answers 409 no_backend.
    deployment = make_deployment(db, project, backend="sagemaker", status="in_service")
    db.commit()
    return deployment.id


def _invoke(client: TestClient, deployment_id: uuid.UUID, key: Key) -> int:
    path = f"/v1/deployments/{deployment_id}/invocations"
    return client.post(path, json=BODY, headers=key.headers).status_code


def test_cached_routes_refuse_as_the_database_does(api: TestClient, db: Session) -> None:
    editor, viewer, stranger = make_key(db), make_key(db), make_key(db)
    deployment_id = _deployment(db, (editor, Role.EDITOR), (viewer, Role.VIEWER))
    _deployment(db, (stranger, Role.OWNER))
    for _ in range(3):  # the first confirms the route; the next ones are served from memory
        assert _invoke(api, deployment_id, editor) == 409  # routed: no backend to call here
        assert _invoke(api, deployment_id, viewer) == 403
        assert _invoke(api, deployment_id, stranger) == 404
        assert _invoke(api, uuid.uuid4(), editor) == 404
    no_key = api.post(f"/v1/deployments/{deployment_id}/invocations", json=BODY)
    assert no_key.status_code == 401


def test_a_revoked_key_is_refused_at_once(api: TestClient, db: Session) -> None:
    admin, editor = make_key(db, admin=True), make_key(db)
    deployment_id = _deployment(db, (editor, Role.EDITOR))
    assert _invoke(api, deployment_id, editor) == 409
    key_hash = hash_secret(editor.secret, PEPPER)
    assert routes.stale((key_hash, deployment_id), 3600) is not None
    assert api.delete(f"/v1/api-keys/{editor.id}", headers=admin.headers).status_code == 204
    # Gone from the fallback too: a database outage now cannot bring it back.
    assert routes.stale((key_hash, deployment_id), 3600) is None
    assert _invoke(api, deployment_id, editor) == 401


def test_a_removed_member_is_refused_once_the_route_expires(api: TestClient, db: Session) -> None:
    owner, editor = make_key(db), make_key(db)
    deployment_id = _deployment(db, (owner, Role.OWNER), (editor, Role.EDITOR))
    assert _invoke(api, deployment_id, editor) == 409
    project_id = api.get(f"/v1/deployments/{deployment_id}", headers=owner.headers).json()[
        "project_id"
    ]
    removed = api.delete(f"/v1/projects/{project_id}/members/{editor.id}", headers=owner.headers)
    assert removed.status_code == 204
    time.sleep(TTL_S + 0.1)
    assert _invoke(api, deployment_id, editor) == 404


def test_cached_invocations_keep_the_request_checks_and_are_counted(
    api: TestClient, db: Session, settings: Settings
) -> None:
    editor = make_key(db)
    deployment_id = _deployment(db, (editor, Role.EDITOR))
    path = f"/v1/deployments/{deployment_id}/invocations"
    assert _invoke(api, deployment_id, editor) == 409  # the route is now served from memory
    labels = {"method": "POST", "route": ROUTE, "status": "409"}
    before = REGISTRY.get_sample_value("stratus_http_requests_total", labels) or 0.0
    answered = api.post(path, json=BODY, headers=editor.headers | {"X-Request-ID": "req-17.a"})
    assert answered.status_code == 409
    assert answered.headers["x-request-id"] == "req-17.a"
    assert REGISTRY.get_sample_value("stratus_http_requests_total", labels) == before + 1

    nul = api.post(path, json=BODY, headers=editor.headers | {"X-Tag": "a\x00b"})
    assert (nul.status_code, nul.json()["code"]) == (400, "nul_character")
    in_query = api.post(f"{path}?x=%00", json=BODY, headers=editor.headers)
    assert (in_query.status_code, in_query.json()["code"]) == (400, "nul_character")
    big = b"x" * (settings.api.max_body_bytes + 1)
    too_big = api.post(path, content=big, headers=editor.headers)
    assert too_big.status_code == 413
    chunked = api.post(path, content=iter([big[:1024], big]), headers=editor.headers)
    assert chunked.status_code == 413
