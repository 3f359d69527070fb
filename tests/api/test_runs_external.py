"""Runs tracked from the caller's own code (backend ``external``) through the HTTP API."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.domain.access import Role
from app.domain.outbox.models import OutboxMessage
from app.domain.runs.models import TrainingRun
from app.settings import get_settings
from tests.factories import Key, make_key, make_project, make_run


@pytest.fixture
def editor(db: Session) -> Any:
    owner, editor, viewer = make_key(db), make_key(db), make_key(db)
    project = make_project(db, (owner, Role.OWNER), (editor, Role.EDITOR), (viewer, Role.VIEWER))
    db.commit()
    return editor, viewer, project


def _track(client: TestClient, key: Key, project: Any, **spec: Any) -> dict[str, Any]:
    body = {"name": "notebook", "backend": "external", "spec": spec}
    r = client.post(f"/v1/projects/{project.id}/runs", json=body, headers=key.headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_external_run_starts_running_with_no_job(
    client: TestClient, db: Session, editor: Any
) -> None:
    key, _, project = editor
    run = _track(client, key, project, hyperparameters={"lr": 0.1}, entrypoint="nb.ipynb")
    assert run["status"] == "running"
    assert run["backend"] == "external"
    assert run["started_at"] is not None
    assert run["spec"] == {
        "entrypoint": "nb.ipynb",
        "hyperparameters": {"lr": 0.1},
        "instance_type": "external",
        "instance_count": 1,
    }
    assert run["instance_seconds"] == 0
    assert run["cost_usd"] == 0
    assert db.scalar(select(func.count()).select_from(OutboxMessage)) == 0
    listed = client.get(
        f"/v1/projects/{project.id}/runs", params={"backend": "external"}, headers=key.headers
    ).json()
    assert [r["id"] for r in listed["items"]] == [run["id"]]
    logs = client.get(f"/v1/runs/{run['id']}/logs", headers=key.headers)
    assert logs.json() == {"lines": [], "next_cursor": None}
    costs = client.get(f"/v1/projects/{project.id}/costs", headers=key.headers).json()
    assert costs["total_usd"] == 0
    assert costs["unpriced_instance_types"] == []


def test_external_run_needs_no_entrypoint_but_refuses_job_fields(
    client: TestClient, db: Session, editor: Any
) -> None:
    key, _, project = editor
    _track(client, key, project)
    body = {
        "name": "x",
        "backend": "external",
        "spec": {"source_dir": "/tmp", "instance_count": 2},
    }
    r = client.post(f"/v1/projects/{project.id}/runs", json=body, headers=key.headers)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert "spec.instance_count, spec.source_dir" in r.json()["detail"]
    # Other backends still need code to run.
    r = client.post(
        f"/v1/projects/{project.id}/runs", json={"name": "x", "spec": {}}, headers=key.headers
    )
    assert r.status_code == 422
    assert "entrypoint" in r.text
    assert db.scalar(select(func.count()).select_from(TrainingRun)) == 1


def test_complete_with_final_metrics_and_replay(client: TestClient, editor: Any) -> None:
    key, viewer, project = editor
    run = _track(client, key, project)
    url = f"/v1/runs/{run['id']}/complete"
    body = {"final_metrics": {"loss": 0.25}}
    assert client.post(url, json=body, headers=viewer.headers).status_code == 403
    headers = {**key.headers, "Idempotency-Key": "done-1"}
    r = client.post(url, json=body, headers=headers)
    assert r.status_code == 200, r.text
    done = r.json()
    assert (done["status"], done["final_metrics"]) == ("completed", {"loss": 0.25})
    assert done["ended_at"] is not None
    # A retry with the same key replays; a new request finds it finished.
    again = client.post(url, json=body, headers=headers)
    assert (again.status_code, again.json()["id"]) == (200, run["id"])
    late = client.post(url, json=body, headers=key.headers)
    assert (late.status_code, late.json()["code"]) == (409, "run_finished")
    params = client.post(
        f"/v1/runs/{run['id']}/params", json={"hyperparameters": {"a": 1}}, headers=key.headers
    )
    assert params.status_code == 409


def test_fail_records_the_reason(client: TestClient, editor: Any) -> None:
    key, _, project = editor
    run = _track(client, key, project)
    r = client.post(
        f"/v1/runs/{run['id']}/fail", json={"reason": "ValueError: nan loss"}, headers=key.headers
    )
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["failure_reason"]) == ("failed", "ValueError: nan loss")
    empty = client.post(f"/v1/runs/{run['id']}/fail", json={"reason": ""}, headers=key.headers)
    assert empty.status_code == 422


def test_complete_with_an_empty_body(client: TestClient, editor: Any) -> None:
    key, _, project = editor
    run = _track(client, key, project)
    r = client.post(f"/v1/runs/{run['id']}/complete", json={}, headers=key.headers)
    assert r.status_code == 200, r.text
    assert r.json()["final_metrics"] == {}


def test_stop_goes_straight_to_stopped(client: TestClient, db: Session, editor: Any) -> None:
    key, _, project = editor
    run = _track(client, key, project)
    r = client.post(f"/v1/runs/{run['id']}/stop", headers=key.headers)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "stopped"
    assert db.scalar(select(func.count()).select_from(OutboxMessage)) == 0


def test_params_merge_into_hyperparameters(client: TestClient, editor: Any) -> None:
    key, _, project = editor
    run = _track(client, key, project, hyperparameters={"lr": 0.1, "epochs": 3})
    url = f"/v1/runs/{run['id']}/params"
    r = client.post(url, json={"hyperparameters": {"lr": 0.2, "opt": "adam"}}, headers=key.headers)
    assert r.status_code == 200, r.text
    assert r.json()["spec"]["hyperparameters"] == {"lr": 0.2, "epochs": 3, "opt": "adam"}
    bad = client.post(url, json={"hyperparameters": {"bad key": 1}}, headers=key.headers)
    assert bad.status_code == 422
    many = {f"k{i}": i for i in range(99)}
    over = client.post(url, json={"hyperparameters": many}, headers=key.headers)
    assert (over.status_code, over.json()["code"]) == (422, "too_many_hyperparameters")


def test_runs_with_a_job_are_not_finished_by_the_client(
    client: TestClient, db: Session, editor: Any
) -> None:
    key, _, project = editor
    run = make_run(db, project, status="running")
    db.commit()
    for action, body in (("complete", {}), ("fail", {"reason": "x"})):
        r = client.post(f"/v1/runs/{run.id}/{action}", json=body, headers=key.headers)
        assert (r.status_code, r.json()["code"]) == (409, "not_external"), r.text
    other = make_key(db)
    db.commit()
    r = client.post(f"/v1/runs/{run.id}/complete", json={}, headers=other.headers)
    assert r.status_code == 404


def test_metrics_ingest_into_an_external_run(client: TestClient, editor: Any) -> None:
    key, _, project = editor
    run = _track(client, key, project)
    batch = {"batch_id": "b-1", "points": [{"name": "loss", "value": 1.0, "step": 1}]}
    url = f"/v1/runs/{run['id']}/metrics"
    assert client.post(url, json=batch, headers=key.headers).status_code == 201
    assert client.post(url, json=batch, headers=key.headers).status_code == 201
    history = client.get(url, headers=key.headers).json()
    assert [p["value"] for p in history["items"]] == [1.0]


def test_tracked_runs_do_not_feed_instance_count_recommendations(
    client: TestClient, editor: Any
) -> None:
    key, _, project = editor
    run = _track(client, key, project, entrypoint="train.py")
    client.post(f"/v1/runs/{run['id']}/complete", json={}, headers=key.headers)
    rec = client.get(
        f"/v1/projects/{project.id}/recommendations/training",
        params={"entrypoint": "train.py"},
        headers=key.headers,
    )
    assert rec.status_code == 200, rec.text
    assert rec.json()["runs_used"] == 0


def test_tracked_runs_count_against_the_active_run_quota(
    client: TestClient, editor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRATUS_QUOTAS__ACTIVE_RUNS_PER_PROJECT", "1")
    get_settings.cache_clear()
    try:
        key, _, project = editor
        first = _track(client, key, project)
        body = {"name": "second", "backend": "external", "spec": {}}
        r = client.post(f"/v1/projects/{project.id}/runs", json=body, headers=key.headers)
        assert r.status_code == 409, r.text
        client.post(f"/v1/runs/{first['id']}/complete", json={}, headers=key.headers)
        r = client.post(f"/v1/projects/{project.id}/runs", json=body, headers=key.headers)
        assert r.status_code == 201, r.text
    finally:
        get_settings.cache_clear()
