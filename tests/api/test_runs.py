"""Training runs through the HTTP API, on PostgreSQL."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.domain.access import Role
from app.domain.outbox.models import OutboxMessage
from app.domain.runs import service
from app.domain.runs.models import TrainingRun
from app.domain.runs.schemas import SPEC_EXAMPLE
from app.domain.runs.states import ALLOWED, RunStatus
from app.errors import Conflict
from app.main import create_app
from app.settings import BackendSettings, Settings
from tests.factories import make_key, make_project, make_run


def _count(db: Session, model: Any) -> int:
    return db.scalar(select(func.count()).select_from(model)) or 0


@pytest.fixture
def owner_project(db: Session) -> Any:
    key = make_key(db)
    project = make_project(db, (key, Role.OWNER))
    db.commit()
    return key, project


def test_create_run_records_pending_run_and_outbox_row(
    client: TestClient, db: Session, owner_project: Any
) -> None:
    key, project = owner_project
    body = {"name": "baseline", "spec": SPEC_EXAMPLE}
    r = client.post(f"/v1/projects/{project.id}/runs", json=body, headers=key.headers)
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["status"] == "pending"
    assert run["backend"] == "local"
    assert run["spec"]["hyperparameters"] == SPEC_EXAMPLE["hyperparameters"]
    messages = db.scalars(select(OutboxMessage)).all()
    assert [(m.topic, m.payload) for m in messages] == [("run.submit", {"run_id": run["id"]})]
    got = client.get(f"/v1/runs/{run['id']}", headers=key.headers).json()
    assert got == run


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"entrypoint": None}, "entrypoint"),
        ({"instance_count": 0}, "instance_count"),
        ({"metric_definitions": [{"name": "loss", "regex": "loss=[0-9]+"}]}, "capture group"),
        ({"metric_definitions": [{"name": "loss", "regex": "loss=([0-9"}]}, "regular expression"),
        ({"hyperparameters": {"bad key": 1}}, "hyperparameter"),
        ({"use_spot": True}, "spot"),
        ({"instance_type": "ml.m5.large"}, "instance_type"),
        ({"input_channels": {"train": "s3://bucket/data"}}, "input_channels"),
        ({"unknown_field": 1}, "unknown_field"),
        ({"role_arn": "arn:aws:iam::123456789012:role/admin"}, "role_arn"),
        ({"image": "registry.example.com/train:1"}, "spec.image"),
        ({"volume_size_gb": 100}, "spec.volume_size_gb"),
        ({"source_dir": None}, "give code_bundle_id or source_dir"),
        ({"source_dir": "examples/recommender"}, "relative"),
        ({"entrypoint": "missing.py"}, "not a regular file"),
        ({"entrypoint": "../recommender/train.py"}, "'..'"),
        ({"entrypoint": "code"}, "not a regular file"),
        ({"output_location": "/nonexistent-root/out"}, "STRATUS_BACKENDS__LOCAL__HOST_ROOTS"),
        # Names the host cannot hold are a 422, never an OSError (found by fuzzing).
        ({"entrypoint": "0" * 256}, "at most 255 bytes"),
        ({"source_dir": "/" + "d" * 256}, "at most 255"),
        ({"input_channels": {"train": "/" + "d" * 300}}, "at most 255"),
    ],
)
def test_invalid_spec_is_422_and_stores_nothing(
    client: TestClient, db: Session, owner_project: Any, change: dict[str, Any], fragment: str
) -> None:
    key, project = owner_project
    spec = copy.deepcopy(SPEC_EXAMPLE)
    spec.update(change)
    spec = {k: v for k, v in spec.items() if v is not None}
    r = client.post(
        f"/v1/projects/{project.id}/runs", json={"name": "x", "spec": spec}, headers=key.headers
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert fragment in r.text
    assert _count(db, TrainingRun) == 0
    assert _count(db, OutboxMessage) == 0


def test_sagemaker_spec_rules(client: TestClient, db: Session, owner_project: Any) -> None:
    key, project = owner_project
    project.backend_config = {"sagemaker": {"s3_prefixes": ["s3://bucket/"]}}
    db.commit()
    spec = {
        "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/train:1",
        "instance_type": "ml.m5.xlarge",
        "input_channels": {"train": "s3://bucket/train"},
        "output_location": "s3://bucket/out",
        "use_spot": True,
        "max_runtime_seconds": 600,
        "max_wait_seconds": 1200,
    }
    body = {"name": "sm", "backend": "sagemaker", "spec": spec}
    r = client.post(f"/v1/projects/{project.id}/runs", json=body, headers=key.headers)
    assert r.status_code == 201, r.text
    body["spec"] = spec | {"instance_type": "local"}
    r = client.post(f"/v1/projects/{project.id}/runs", json=body, headers=key.headers)
    assert r.status_code == 422
    assert "ml.m5.xlarge" in r.json()["detail"]
    body["spec"] = spec | {"source_dir": "/srv/code"}
    r = client.post(f"/v1/projects/{project.id}/runs", json=body, headers=key.headers)
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["body", "spec", "source_dir"]


def test_host_paths_are_checked_at_create_time(
    client: TestClient, db: Session, owner_project: Any, tmp_path: Path
) -> None:
    key, project = owner_project
    (tmp_path / "train").mkdir()
    spec = SPEC_EXAMPLE | {
        "input_channels": {"train": (tmp_path / "train").as_uri(), "eval": str(tmp_path)},
        "output_location": str(tmp_path / "out" / "runs"),
    }
    url = f"/v1/projects/{project.id}/runs"
    r = client.post(url, json={"name": "ok", "spec": spec}, headers=key.headers)
    assert r.status_code == 201, r.text
    missing = spec | {"input_channels": {"train": str(tmp_path / "nope")}}
    r = client.post(url, json={"name": "missing", "spec": missing}, headers=key.headers)
    assert r.status_code == 422
    assert r.json()["errors"] == [
        {
            "loc": ["body", "spec", "input_channels", "train"],
            "msg": f"{str(tmp_path / 'nope')!r} does not exist on this host",
            "type": "invalid_spec",
        }
    ]
    (tmp_path / "file").write_text("x")
    blocked = spec | {"output_location": str(tmp_path / "file" / "out")}
    r = client.post(url, json={"name": "blocked", "spec": blocked}, headers=key.headers)
    assert r.status_code == 422
    assert "is not a directory" in r.text
    assert _count(db, TrainingRun) == 1


def test_with_no_host_roots_every_host_path_is_refused(
    settings: Settings, session_factory: Any, db: Session, owner_project: Any
) -> None:
    key, project = owner_project
    bare = settings.model_copy(update={"backends": BackendSettings()})
    with TestClient(create_app(bare, session_factory)) as client:
        r = client.post(
            f"/v1/projects/{project.id}/runs",
            json={"name": "x", "spec": SPEC_EXAMPLE},
            headers=key.headers,
        )
    assert r.status_code == 422
    assert "none is allowed until an admin sets STRATUS_BACKENDS__LOCAL__HOST_ROOTS" in r.text
    assert "code bundle" in r.text
    assert _count(db, TrainingRun) == 0


def test_stop_pending_run_stops_at_once(
    client: TestClient, db: Session, owner_project: Any
) -> None:
    key, project = owner_project
    run = make_run(db, project)
    db.commit()
    r = client.post(f"/v1/runs/{run.id}/stop", headers=key.headers)
    assert r.status_code == 202
    assert r.json()["status"] == "stopped"
    assert r.json()["ended_at"] is not None
    assert client.post(f"/v1/runs/{run.id}/stop", headers=key.headers).status_code == 409


def test_stop_running_run_goes_through_stopping(
    client: TestClient, db: Session, owner_project: Any
) -> None:
    key, project = owner_project
    run = make_run(db, project, status="running")
    db.commit()
    r = client.post(f"/v1/runs/{run.id}/stop", headers=key.headers)
    assert r.status_code == 202
    assert r.json()["status"] == "stopping"
    again = client.post(f"/v1/runs/{run.id}/stop", headers=key.headers)
    assert again.status_code == 202
    topics = db.scalars(select(OutboxMessage.topic)).all()
    assert topics == ["run.stop"]


def test_list_runs_filters_and_pages(client: TestClient, db: Session, owner_project: Any) -> None:
    key, project = owner_project
    for status in ["pending", "running", "running", "completed", "failed"]:
        make_run(db, project, status=status)
    db.commit()
    url = f"/v1/projects/{project.id}/runs"
    running = client.get(url, params={"status": "running"}, headers=key.headers).json()
    assert [r["status"] for r in running["items"]] == ["running", "running"]
    first = client.get(url, params={"limit": 2}, headers=key.headers).json()
    rest = client.get(
        url, params={"limit": 10, "cursor": first["next_cursor"]}, headers=key.headers
    ).json()
    assert len(first["items"]) + len(rest["items"]) == 5
    assert rest["next_cursor"] is None
    # A naive time is taken as UTC, as everywhere in the API.
    naive = client.get(url, params={"created_after": "2000-01-01T00:00:00"}, headers=key.headers)
    assert len(naive.json()["items"]) == 5
    later = client.get(url, params={"created_after": "2999-01-01T00:00:00Z"}, headers=key.headers)
    assert later.json()["items"] == []


def test_transition_follows_the_state_machine(db: Session, owner_project: Any) -> None:
    _, project = owner_project
    run = make_run(db, project)
    assert service.transition(db, run.id, RunStatus.PENDING, RunStatus.SUBMITTING)
    # A second writer that still believes the run is pending is told it is stale.
    assert not service.transition(db, run.id, RunStatus.PENDING, RunStatus.SUBMITTING)
    assert service.transition(db, run.id, RunStatus.SUBMITTING, RunStatus.RUNNING)
    with pytest.raises(Conflict):
        service.transition(db, run.id, RunStatus.RUNNING, RunStatus.PENDING)
    assert service.transition(db, run.id, RunStatus.RUNNING, RunStatus.COMPLETED)
    db.refresh(run)
    assert run.status == "completed"
    assert run.started_at is not None
    assert run.ended_at is not None
    assert run.started_at <= run.ended_at


def test_terminal_states_have_no_exits() -> None:
    for status in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.STOPPED):
        assert ALLOWED[status] == frozenset()
    reachable = {RunStatus.PENDING}
    frontier = [RunStatus.PENDING]
    while frontier:
        for nxt in ALLOWED[frontier.pop()]:
            if nxt not in reachable:
                reachable.add(nxt)
                frontier.append(nxt)
    assert reachable == set(RunStatus)
