"""Input that cannot be stored, or is of the wrong JSON type, is a 4xx problem+json, never a
500 and never a silently coerced value. On PostgreSQL, which is what refuses NUL and overflows."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, get_args

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from app.api.deps import SessionDep
from app.domain.access import Role
from app.domain.metrics.repository import encode_point_cursor
from app.domain.pagination import encode_cursor
from app.domain.projects.models import Project
from app.domain.projects.schemas import MAX_BUDGET_USD
from app.domain.runs.schemas import SPEC_EXAMPLE
from app.domain.schemas import WriteModel
from app.main import create_app
from app.settings import Settings
from tests.factories import Key, make_deployment, make_key, make_project, make_run
from tests.routes import operations

PROBLEM = "application/problem+json"


@pytest.fixture
def owner(db: Session) -> tuple[Key, Project]:
    key = make_key(db)
    project = make_project(db, (key, Role.OWNER), budget_usd=Decimal("10.00"))
    db.commit()
    return key, project


def _problem(response: Any, *statuses: int) -> dict[str, Any]:
    assert response.status_code in statuses, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code
    return body


# --- NUL and other unstorable text -----------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "entrypoint=a%00b",
        "entrypoint=train.py&instance_type=%00",
        "entrypoint=train.py&x=%00",  # even a parameter no route reads
    ],
)
def test_nul_in_query_is_400(client: TestClient, owner: tuple[Key, Project], query: str) -> None:
    key, project = owner
    url = f"/v1/projects/{project.id}/recommendations/training?{query}"
    body = _problem(client.get(url, headers=key.headers), 400)
    assert body["code"] == "nul_character"


def test_nul_in_path_or_header_is_400(client: TestClient, owner: tuple[Key, Project]) -> None:
    key, project = owner
    _problem(client.get(f"/v1/projects/{project.id}%00", headers=key.headers), 400)
    r = client.post(
        f"/v1/projects/{project.id}/models",
        json={"name": "m", "artifact_uri": "s3://bucket/m.tar.gz"},
        headers={**key.headers, "Idempotency-Key": "a\x00b"},
    )
    _problem(r, 400)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("description", {"description": "a\x00b"}),
        ("description", {"description": "lone \ud800 surrogate"}),
    ],
)
def test_unstorable_text_in_body_is_422(
    client: TestClient, owner: tuple[Key, Project], path: str, body: dict[str, Any]
) -> None:
    key, project = owner
    r = client.patch(
        f"/v1/projects/{project.id}",
        content=json.dumps(body),  # ASCII escapes: a lone surrogate travels as \ud800
        headers={**key.headers, "Content-Type": "application/json"},
    )
    problem = _problem(r, 422)
    assert problem["errors"][0]["loc"] == ["body", path]


def test_nul_in_nested_body_keys_and_values_is_422(
    client: TestClient, owner: tuple[Key, Project]
) -> None:
    key, project = owner
    for spec_change in (
        {"environment": {"A\x00": "1"}},
        {"environment": {"A": "1\x00"}},
        {"entrypoint": "train\x00.py"},
        {"hyperparameters": {"lr": "0.1\x00"}},
    ):
        spec = {**SPEC_EXAMPLE, **spec_change}
        r = client.post(
            f"/v1/projects/{project.id}/runs",
            json={"name": "r", "spec": spec},
            headers=key.headers,
        )
        problem = _problem(r, 422)
        assert problem["errors"][0]["loc"][:2] == ["body", "spec"], problem


# --- numbers that do not fit -----------------------------------------------------------------


@pytest.mark.parametrize("budget", [1e12, 999_999_999_999.995, 1e300, -0.01])
def test_budget_out_of_column_range_is_422(
    client: TestClient, db: Session, owner: tuple[Key, Project], budget: float
) -> None:
    key, project = owner
    url = f"/v1/projects/{project.id}"
    _problem(client.patch(url, json={"budget_usd": budget}, headers=key.headers), 422)
    r = client.post("/v1/projects", json={"name": "big", "budget_usd": budget}, headers=key.headers)
    _problem(r, 422)
    db.refresh(project)
    assert project.budget_usd == Decimal("10.00")


def test_largest_budget_is_stored(client: TestClient, owner: tuple[Key, Project]) -> None:
    key, project = owner
    r = client.patch(
        f"/v1/projects/{project.id}", json={"budget_usd": MAX_BUDGET_USD}, headers=key.headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["budget_usd"] == MAX_BUDGET_USD


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_422(
    client: TestClient, db: Session, owner: tuple[Key, Project], raw: str
) -> None:
    key, project = owner
    deployment = make_deployment(db, project)
    db.commit()
    body = f'{{"scaling_policy": {{"headroom": {raw}}}}}'
    r = client.patch(
        f"/v1/deployments/{deployment.id}",
        content=body,
        headers={**key.headers, "Content-Type": "application/json"},
    )
    _problem(r, 422)
    r = client.patch(
        f"/v1/projects/{project.id}",
        content=f'{{"budget_usd": {raw}}}',
        headers={**key.headers, "Content-Type": "application/json"},
    )
    _problem(r, 422)


def test_query_numbers_out_of_range_are_422(
    client: TestClient, db: Session, owner: tuple[Key, Project]
) -> None:
    key, project = owner
    run = make_run(db, project)
    db.commit()
    for url in (
        f"/v1/projects/{project.id}/runs?limit=99999999999999999999999",
        f"/v1/runs/{run.id}/metrics/series?buckets=1e400",
        f"/v1/projects/{project.id}/recommendations/training?entrypoint=t&max_duration_s=nan",
        f"/v1/projects/{project.id}/recommendations/training?entrypoint=t&max_duration_s=inf",
        f"/v1/projects/{project.id}/runs?created_before=0.5",  # not read as a Unix time
        f"/v1/projects/{project.id}/runs?created_after=2026-01-01",  # a date, not a time
        f"/v1/runs/{run.id}/metrics?until=1700000000",
    ):
        _problem(client.get(url, headers=key.headers), 422)


# --- wrong JSON types ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"budget_usd": False},
        {"budget_usd": True},
        {"budget_usd": "5"},
        {"description": 5},
        {"metrics_retention_days": 1.5},
        {"metrics_retention_days": 1e300},
        {"metrics_retention_days": "30"},
        {"metrics_retention_days": True},
    ],
)
def test_no_type_coercion_in_bodies(
    client: TestClient, db: Session, owner: tuple[Key, Project], body: dict[str, Any]
) -> None:
    key, project = owner
    _problem(client.patch(f"/v1/projects/{project.id}", json=body, headers=key.headers), 422)
    db.refresh(project)
    assert project.budget_usd == Decimal("10.00")


def test_nested_bodies_are_strict_too(
    client: TestClient, db: Session, owner: tuple[Key, Project]
) -> None:
    key, project = owner
    deployment = make_deployment(db, project)
    db.commit()
    url = f"/v1/deployments/{deployment.id}"
    for body in (
        {"scaling_policy": {"max_step": True}},
        {"scaling_policy": {"optimizer_enabled": 1}},
        {"desired_instances": "2"},
    ):
        _problem(client.patch(url, json=body, headers=key.headers), 422)
    spec = {**SPEC_EXAMPLE, "instance_count": True}
    r = client.post(
        f"/v1/projects/{project.id}/runs", json={"name": "r", "spec": spec}, headers=key.headers
    )
    _problem(r, 422)


def test_json_strings_still_parse_uuids_datetimes_enums_and_ints_as_floats(
    client: TestClient, db: Session, owner: tuple[Key, Project]
) -> None:
    key, project = owner
    member = make_key(db)
    db.commit()
    r = client.put(
        f"/v1/projects/{project.id}/members/{member.id}",
        json={"role": "viewer"},
        headers=key.headers,
    )
    assert r.status_code == 200, r.text
    r = client.patch(
        f"/v1/projects/{project.id}",
        json={"budget_usd": 12, "metrics_retention_days": 30.0},  # JSON Schema: 30.0 is integral
        headers=key.headers,
    )
    assert r.status_code == 200, r.text
    assert (r.json()["budget_usd"], r.json()["metrics_retention_days"]) == (12.0, 30)
    spec = {**SPEC_EXAMPLE, "hyperparameters": {"flag": True, "n": 3, "lr": 0.1, "opt": "adam"}}
    r = client.post(
        f"/v1/projects/{project.id}/runs", json={"name": "ok", "spec": spec}, headers=key.headers
    )
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["hyperparameters"] == spec["hyperparameters"]


# --- malformed bodies ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b'{"description": ', "application/json", 400),  # malformed JSON
        (b"[1, 2]", "application/json", 422),  # not an object
        (b'"text"', "application/json", 422),
        (b"null", "application/json", 422),
        (b"", "application/json", 422),  # empty
        (b"\xff\xfe", "application/json", (400, 422)),  # not UTF-8
        (b"1" * 5000, "application/json", (400, 422)),  # an integer Python refuses to parse
        (b'{"description": "x"}', "text/plain", 415),
        (b"description=x", "application/x-www-form-urlencoded", 415),
    ],
)
def test_malformed_bodies_are_clear_4xx(
    client: TestClient,
    owner: tuple[Key, Project],
    content: bytes,
    content_type: str,
    status: int | tuple[int, int],
) -> None:
    key, project = owner
    r = client.patch(
        f"/v1/projects/{project.id}",
        content=content,
        headers={**key.headers, "Content-Type": content_type},
    )
    _problem(r, *(status if isinstance(status, tuple) else (status,)))


def test_raw_json_routes_refuse_other_content_types(
    client: TestClient, db: Session, owner: tuple[Key, Project]
) -> None:
    key, project = owner
    run = make_run(db, project)
    db.commit()
    r = client.post(
        f"/v1/runs/{run.id}/metrics",
        content=b"name,value\nloss,1\n",
        headers={**key.headers, "Content-Type": "text/csv"},
    )
    _problem(r, 415)


def test_database_data_error_is_422_not_500(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    """Defence in depth: a value validation let through, refused by the database, is a 422."""
    app = create_app(settings, session_factory)

    @app.get("/overflow")
    def overflow(session: SessionDep) -> dict[str, str]:
        session.execute(text("SELECT CAST(1e15 AS NUMERIC(14, 2))"))
        return {}

    with TestClient(app) as test_client:
        body = _problem(test_client.get("/overflow"), 422)
    assert body["code"] == "value_out_of_range"


# --- every body model follows the rules ------------------------------------------------------


def _body_models(settings: Settings) -> set[type[BaseModel]]:
    found: set[type[BaseModel]] = set()
    for operation in operations(create_app(settings)):
        if operation.route.body_field is not None:
            annotation = operation.route.body_field.field_info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                found.add(annotation)
    return found


def _nested_models(model: type[BaseModel], seen: set[type[BaseModel]]) -> None:
    if model in seen:
        return
    seen.add(model)
    for field in model.model_fields.values():
        stack: list[Any] = [field.annotation]
        while stack:
            tp = stack.pop()
            if isinstance(tp, type) and issubclass(tp, BaseModel):
                _nested_models(tp, seen)
            stack.extend(get_args(tp))


def test_every_request_body_model_is_a_write_model(settings: Settings) -> None:
    seen: set[type[BaseModel]] = set()
    for model in _body_models(settings):
        _nested_models(model, seen)
    assert seen, "no body models found"
    loose = sorted(m.__name__ for m in seen if not issubclass(m, WriteModel))
    assert not loose, f"body models that are not WriteModels (lax types, NUL allowed): {loose}"


def test_unknown_uuid_still_404(client: TestClient, owner: tuple[Key, Project]) -> None:
    key, _project = owner
    _problem(client.get(f"/v1/projects/{uuid.uuid4()}", headers=key.headers), 404)


def test_cursor_of_another_list_is_400(
    client: TestClient, db: Session, owner: tuple[Key, Project]
) -> None:
    key, project = owner
    run = make_run(db, project)
    db.commit()
    foreign = [
        encode_cursor(uuid.uuid4()),
        encode_cursor(5),
        encode_cursor(2**70),
        encode_cursor(-(2**70)),
        encode_point_cursor(datetime(2026, 1, 1, tzinfo=UTC), 2**70),
    ]
    urls = [
        "/v1/projects",
        f"/v1/projects/{project.id}/runs",
        f"/v1/projects/{project.id}/members",
        f"/v1/runs/{run.id}/metrics",
    ]
    for url in urls:
        for cursor in foreign:
            r = client.get(url, params={"cursor": cursor}, headers=key.headers)
            assert r.status_code in (200, 400), (url, cursor, r.text)


@pytest.mark.parametrize(
    "point",
    [
        {"name": "loss", "value": True},
        {"name": "loss", "value": "0.5"},
        {"name": "loss", "value": 1, "step": True},
        {"name": "loss", "value": 1, "timestamp": 0},
    ],
)
def test_metric_points_take_json_types_only(
    client: TestClient, db: Session, owner: tuple[Key, Project], point: dict[str, Any]
) -> None:
    key, project = owner
    run = make_run(db, project)
    db.commit()
    r = client.post(f"/v1/runs/{run.id}/metrics", json={"points": [point]}, headers=key.headers)
    _problem(r, 422)
