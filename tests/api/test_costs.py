"""Cost: instance-seconds x the price table, on runs, deployments and per project."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.domain.access import Role
from tests.factories import make_deployment, make_key, make_project, make_run


def test_run_deployment_and_project_costs(client: TestClient, db: Session) -> None:
    key = make_key(db)
    project = make_project(db, (key, Role.VIEWER), budget_usd=10)
    now = utcnow()
    billed = make_run(
        db,
        project,
        backend="sagemaker",
        status="completed",
        spec={"image": "x", "instance_type": "ml.m5.xlarge", "instance_count": 2},
        billable_seconds=7200.0,  # two instances for an hour
        started_at=now - timedelta(hours=1),
        ended_at=now,
    )
    running = make_run(
        db,
        project,
        status="running",
        spec={"entrypoint": "t.py", "instance_type": "ml.m5.large", "instance_count": 1},
        started_at=now - timedelta(minutes=30),
    )
    deployment = make_deployment(
        db,
        project,
        backend="sagemaker",
        instance_type="ml.m5.xlarge",
        status="in_service",
        current_instances=1,
        instance_seconds=3600.0,
        capacity_since=now - timedelta(hours=1),
    )
    make_run(
        db,
        project,
        spec={"entrypoint": "t.py", "instance_type": "ml.zz.unknown"},
        status="completed",
        billable_seconds=60.0,
    )
    db.commit()

    run = client.get(f"/v1/runs/{billed.id}", headers=key.headers).json()
    assert run["instance_seconds"] == 7200.0
    assert run["cost_usd"] == 0.46  # 2 h x $0.23
    live = client.get(f"/v1/runs/{running.id}", headers=key.headers).json()
    assert 1799 <= live["instance_seconds"] <= 1900
    dep = client.get(f"/v1/deployments/{deployment.id}", headers=key.headers).json()
    assert 7199 <= dep["instance_seconds"] <= 7300  # an hour closed + an hour open
    assert 0.45 <= dep["cost_usd"] <= 0.47

    summary = client.get(f"/v1/projects/{project.id}/costs", headers=key.headers).json()
    training = {line["instance_type"]: line for line in summary["training"]}
    assert training["ml.m5.xlarge"]["instance_seconds"] == 7200.0
    assert 1799 <= training["ml.m5.large"]["instance_seconds"] <= 1900
    assert training["ml.zz.unknown"]["cost_usd"] is None
    assert summary["unpriced_instance_types"] == ["ml.zz.unknown"]
    assert 0.9 <= summary["total_usd"] <= 1.0
    assert summary["budget_usd"] == 10.0
    assert summary["budget_remaining_usd"] == round(10.0 - summary["total_usd"], 4)
