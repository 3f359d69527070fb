"""The optimizer's glue: a pass stores one explained decision per window and sets the absolute
target; what-if and the training recommendation answer from the same fit."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.domain.access import Role
from app.domain.deployments.models import Deployment
from app.domain.metrics import repository as metrics_repo
from app.domain.optimizer import service
from app.domain.optimizer.models import OptimizerDecision
from app.domain.outbox.models import OutboxMessage
from tests.factories import make_deployment, make_key, make_project, make_run

POLICY = {
    "optimizer_enabled": True,
    "latency_slo_ms": 200.0,
    "headroom": 0.2,
    "cost_weight": 0.5,
    "scale_in_cooldown_s": 300,
    "scale_out_cooldown_s": 60,
    "max_step": 2,
}


def overloaded(db: Session, deployment: Deployment, minutes: int = 30) -> None:
    """A window where p95 grows with per-instance load and the latest load breaks the SLO."""
    now = utcnow().replace(second=0, microsecond=0)
    rows = []
    for i in range(minutes * 6):  # 10-second periods of the local backend
        ts = now - timedelta(seconds=10 * (minutes * 6 - i))
        load = 5.0 + 10.0 * i / (minutes * 6)  # 5 -> 15 requests/s on one instance
        p95 = 20.0 * load  # 100 -> 300 ms: past the 200 ms SLO by the end
        rows += [
            ("invocations", None, ts, load * 10),
            ("latency_p95_ms", None, ts, p95),
            ("latency_mean_ms", None, ts, p95 / 2),
            ("instances", None, ts, 1.0),
        ]
    metrics_repo.add_many(db, deployment.project_id, "deployment", deployment.id, rows)


def test_a_pass_scales_out_once_per_window_and_explains_why(db: Session) -> None:
    project = make_project(db)
    deployment = make_deployment(
        db,
        project,
        status="in_service",
        desired_instances=1,
        current_instances=1,
        min_instances=1,
        max_instances=4,
        scaling_policy=POLICY,
    )
    overloaded(db, deployment)
    end = utcnow()
    assert service.optimize(db, deployment.id, end)
    db.refresh(deployment)
    assert deployment.desired_instances > 1
    assert deployment.status == "updating"  # the resize is queued for the backend
    assert db.scalars(select(OutboxMessage.topic)).all() == ["deployment.update"]
    decision = db.scalars(select(OptimizerDecision)).one()
    assert (decision.action, decision.applied) == ("scale_out", True)
    assert decision.desired_instances == deployment.desired_instances
    assert decision.reason
    table = decision.details["candidates"]
    assert [c["instances"] for c in table] == [1, 2, 3, 4]
    assert {"predicted_p95_ms", "efficiency", "cost_per_hour", "feasible"} <= set(table[0])
    # The same window again (a redelivered task, a second scheduler): nothing new.
    assert not service.optimize(db, deployment.id, end)
    assert len(db.scalars(select(OptimizerDecision)).all()) == 1
    # The next pass starts from the target this one worked to (its hysteresis over a floor).
    state = service._state(db, deployment)
    assert state.latency_target_ms == decision.details["inputs"]["latency_target_ms"]
    assert state.latency_target_ms is not None
    assert state.latency_target_ms >= 160.0


def test_no_decision_when_the_optimizer_is_off_or_the_deployment_is_changing(
    db: Session,
) -> None:
    project = make_project(db)
    off = make_deployment(db, project, status="in_service", current_instances=1)
    busy = make_deployment(
        db, project, status="updating", current_instances=1, scaling_policy=POLICY
    )
    for d in (off, busy):
        overloaded(db, d)
        assert not service.optimize(db, d.id, utcnow())
    assert db.scalars(select(OptimizerDecision)).all() == []


def test_decisions_what_if_and_training_recommendation_api(client: TestClient, db: Session) -> None:
    key = make_key(db)
    project = make_project(db, (key, Role.VIEWER))
    deployment = make_deployment(
        db,
        project,
        status="in_service",
        desired_instances=1,
        current_instances=1,
        max_instances=4,
        scaling_policy=POLICY,
    )
    overloaded(db, deployment)
    service.optimize(db, deployment.id, utcnow())
    now = utcnow()
    for count, minutes in [(1, 100.0), (2, 55.0), (4, 30.0), (8, 17.0)]:
        make_run(
            db,
            project,
            status="completed",
            spec={
                "entrypoint": "train.py",
                "instance_type": "ml.m5.xlarge",
                "instance_count": count,
            },
            started_at=now - timedelta(minutes=minutes),
            ended_at=now,
        )
    db.commit()
    base = f"/v1/deployments/{deployment.id}"
    page = client.get(f"{base}/decisions", headers=key.headers).json()
    latest = client.get(f"{base}/decisions/latest", headers=key.headers).json()
    assert [d["id"] for d in page["items"]] == [latest["id"]]
    assert latest["action"] == "scale_out"
    assert latest["details"]["fit"]["r2"] > 0.9

    answer = client.post(
        f"{base}/what-if", json={"instances": [1, 2, 3], "load_rps": 30}, headers=key.headers
    )
    assert answer.status_code == 200, answer.text
    rows = answer.json()["candidates"]
    assert [r["instances"] for r in rows] == [1, 2, 3]
    # More instances, less load each, lower latency; None = past the estimated capacity.
    p95 = [r["predicted_p95_ms"] or float("inf") for r in rows]
    assert p95[0] > p95[1] > p95[2]
    assert not rows[0]["feasible"]
    assert rows[0]["load_per_instance_rps"] == 30.0

    bad = client.post(f"{base}/what-if", json={"instances": []}, headers=key.headers)
    assert bad.status_code == 422
    # Counts outside 1..max_instances are refused, not clamped into a silent answer.
    for counts in ([0, -1], [1, deployment.max_instances + 1]):
        bad = client.post(f"{base}/what-if", json={"instances": counts}, headers=key.headers)
        assert bad.status_code == 422, bad.text
        assert bad.headers["content-type"] == "application/problem+json"
        assert f"1..{deployment.max_instances}" in bad.json()["detail"]

    rec = client.get(
        f"/v1/projects/{project.id}/recommendations/training",
        params={"entrypoint": "train.py"},
        headers=key.headers,
    ).json()
    assert rec["runs_used"] == 4
    assert rec["instance_type"] == "ml.m5.xlarge"
    assert rec["mode"] == "model"
    assert 1 <= rec["instance_count"] <= 16
    assert rec["reason"]
