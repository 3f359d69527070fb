"""The optimizer's pass really resizes a local deployment: replica processes come up."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import sessionmaker

from app.backends import registry
from app.backends.local import LocalBackend
from app.backends.naming import endpoint_name
from app.clock import utcnow
from app.domain.access import Role
from app.domain.deployments.models import Deployment
from app.domain.metrics import repository as metrics_repo
from app.domain.optimizer import history
from app.domain.optimizer.models import OptimizerDecision
from app.domain.outbox import service as outbox
from app.domain.outbox.models import OutboxMessage
from app.main import create_app
from app.settings import get_settings
from tests.backends.local.conftest import wait_for
from tests.factories import Key, make_deployment, make_key, make_model_version, make_project
from tests.workers.conftest import UnitOfWork
from workers.tasks import deployments as deployment_tasks
from workers.tasks import optimizer as optimizer_tasks

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("app_on_pg")]
POLICY = {"optimizer_enabled": True, "latency_slo_ms": 200.0, "max_step": 2}


@pytest.fixture
def local(backend: LocalBackend) -> Iterator[LocalBackend]:
    with registry.override("local", backend):
        yield backend


def _status(committed: UnitOfWork, deployment_id: object) -> tuple[str, int, int]:
    with committed() as session:
        d = session.get(Deployment, deployment_id)
        assert d is not None
        return d.status, d.current_instances, d.desired_instances


def _serving(committed: UnitOfWork, deployment_id: object, count: int) -> bool:
    deployment_tasks.poll_endpoints("local")
    return _status(committed, deployment_id)[:2] == ("in_service", count)


def _one_replica(
    committed: UnitOfWork, artifact: Path, editor: Key | None = None
) -> tuple[uuid.UUID, uuid.UUID]:
    """(deployment id, project id) of a local deployment serving from one replica, the
    optimizer on, 1 to 3 instances; ``editor`` may write to its project."""
    with committed() as session:
        members = [(editor, Role.EDITOR)] if editor is not None else []
        project = make_project(session, *members)
        model = make_model_version(session, project, artifact_uri=artifact.as_uri())
        deployment = make_deployment(
            session,
            project,
            model,
            desired_instances=1,
            min_instances=1,
            max_instances=3,
            scaling_policy=POLICY,
        )
        message = outbox.enqueue(
            session, outbox.DEPLOYMENT_CREATE, deployment_id=str(deployment.id)
        )
        session.flush()
        deployment_id, message_id, project_id = deployment.id, message.id, project.id
    deployment_tasks.create_deployment(message_id)
    wait_for(lambda: _serving(committed, deployment_id, 1), timeout=60, every=0.3)
    return deployment_id, project_id


def test_a_pass_over_an_overloaded_deployment_adds_replicas(
    committed: UnitOfWork, local: LocalBackend, recommender_artifact: Path
) -> None:
    deployment_id, project_id = _one_replica(committed, recommender_artifact)

    # Thirty minutes in which p95 grew with load on the one replica, now past the SLO.
    now = utcnow().replace(microsecond=0)
    rows = []
    for i in range(180):
        ts = now - timedelta(seconds=10 * (180 - i))
        load = 5.0 + 10.0 * i / 180
        rows += [
            ("invocations", None, ts, load * 10),
            ("latency_p95_ms", None, ts, 20.0 * load),
            ("latency_mean_ms", None, ts, 10.0 * load),
            ("instances", None, ts, 1.0),
        ]
    with committed() as session:
        metrics_repo.add_many(session, project_id, "deployment", deployment_id, rows)

    assert optimizer_tasks.optimizer_pass() == 1  # fans out this deployment (memory broker)
    end = optimizer_tasks.window_end(utcnow(), 60.0)
    assert optimizer_tasks.optimize_deployment(str(deployment_id), end.isoformat())
    status, _, desired = _status(committed, deployment_id)
    assert (status, desired) == ("updating", 3)
    with committed() as session:
        decision = session.scalars(select(OptimizerDecision)).one()
        update_id = session.scalars(
            select(OutboxMessage.id).where(OutboxMessage.topic == outbox.DEPLOYMENT_UPDATE)
        ).one()
    assert decision.action == "scale_out"
    assert "p95" in decision.reason or "SLO" in decision.reason

    deployment_tasks.update_deployment(update_id)
    wait_for(lambda: _serving(committed, deployment_id, 3), timeout=60, every=0.3)
    endpoint = local.describe_endpoints([endpoint_name(deployment_id)])[
        endpoint_name(deployment_id)
    ]
    assert endpoint.current_instances == 3
    reply = local.invoke(endpoint_name(deployment_id), b'{"user": 3, "k": 5}', "application/json")
    assert len(json.loads(reply.body)["items"]) == 5


def _periodic_history(end: datetime, days: int = 3) -> list[dict[str, object]]:
    """Minute points: 5 req/s, and 15 req/s for ten minutes every hour, the next burst due five
    minutes after ``end``; p95 grows with the load per instance (one instance, two in bursts)."""
    points: list[dict[str, object]] = []
    for i in range(days * 1440, 0, -1):
        ts = end - timedelta(minutes=i)
        burst = (-i - 5) % 60 < 10
        load, instances = (15.0, 2.0) if burst else (5.0, 1.0)
        p95 = 20.0 + 12.0 * load / instances
        stamp = ts.isoformat()
        points += [
            {"name": "invocations", "value": load * 10, "timestamp": stamp},
            {"name": "latency_p95_ms", "value": p95, "timestamp": stamp},
            {"name": "latency_mean_ms", "value": p95 / 2, "timestamp": stamp},
            {"name": "instances", "value": instances, "timestamp": stamp},
        ]
    return points


def test_a_periodic_load_is_foreseen_and_capacity_comes_before_the_burst(
    committed: UnitOfWork, local: LocalBackend, recommender_artifact: Path, pg_engine: Engine
) -> None:
    with committed() as session:
        key = make_key(session)
    deployment_id, _ = _one_replica(committed, recommender_artifact, key)

    end = optimizer_tasks.window_end(utcnow(), 60.0)
    api = TestClient(create_app(get_settings(), sessionmaker(bind=pg_engine)))
    base = f"/v1/deployments/{deployment_id}"
    points = _periodic_history(end)
    for start in range(0, len(points), 10_000):
        sent = api.post(
            f"{base}/metrics", json={"points": points[start : start + 10_000]}, headers=key.headers
        )
        assert sent.status_code == 201, sent.text
    history.forget_scans()

    # Quiet now (one instance is plenty), yet the pass adds capacity for the burst it foresees.
    assert optimizer_tasks.optimize_deployment(str(deployment_id), end.isoformat())
    latest = api.get(f"{base}/decisions/latest", headers=key.headers).json()
    assert latest["action"] == "scale_out", latest["reason"]
    assert latest["desired_instances"] >= 2
    reason = latest["reason"]
    assert reason.lower().startswith("pattern with period 60 min, strength"), reason
    # The rise is placed on the pattern's 5-minute grid: the bucket holding the burst's start,
    # or the next one when the burst fills too little of that bucket's mean to count as the rise.
    burst = end + timedelta(minutes=5)
    bucket = burst - timedelta(minutes=burst.minute % 5)
    expected = {f"{bucket:%H:%M}", f"{bucket + timedelta(minutes=5):%H:%M}"}
    said = reason.split("pre-scaling for the rise expected at ")[1][:5]
    assert said in expected, reason
    assert latest["details"]["season"]["pattern"]["period_s"] == 3600.0
    assert latest["details"]["inputs"]["load_now_rps"] < 6.0
