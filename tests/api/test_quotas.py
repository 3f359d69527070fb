"""Budgets and per-project quotas hold: runs, deployments, resizes and the optimizer are
refused (or clamped) with the limit and the setting that raises it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session

from app.backends.base import MetricPage, MetricSample, TrainingMetric
from app.clock import utcnow
from app.domain.access import Role
from app.domain.deployments import lifecycle as deployment_lifecycle
from app.domain.metrics.models import MetricPoint
from app.domain.optimizer import service as optimizer
from app.domain.optimizer.models import OptimizerDecision
from app.domain.runs import lifecycle as run_lifecycle
from app.settings import get_settings
from tests.api.test_optimizer import POLICY, overloaded
from tests.factories import (
    LOCAL_SPEC,
    Key,
    make_deployment,
    make_key,
    make_model_version,
    make_project,
    make_run,
)

SetQuota = Callable[..., None]


@pytest.fixture
def quota(monkeypatch: pytest.MonkeyPatch) -> Iterator[SetQuota]:
    """Set ``STRATUS_QUOTAS__<NAME>`` values for the test."""

    def set_quota(**values: int) -> None:
        for name, value in values.items():
            monkeypatch.setenv(f"STRATUS_QUOTAS__{name.upper()}", str(value))
        get_settings.cache_clear()

    yield set_quota
    get_settings.cache_clear()


def _sagemaker_run(name: str, instance_type: str = "ml.m5.xlarge", count: int = 1) -> Any:
    return {
        "name": name,
        "backend": "sagemaker",
        "spec": {
            "image": "123.dkr.ecr.us-east-1.amazonaws.com/train:1",
            "instance_type": instance_type,
            "instance_count": count,
            "max_runtime_seconds": 3600,
        },
    }


def _local_run(name: str) -> Any:
    return {"name": name, "backend": "local", "spec": LOCAL_SPEC}


def _editor_project(db: Session, **fields: Any) -> tuple[Key, Any]:
    editor = make_key(db)
    project = make_project(db, (editor, Role.EDITOR), **fields)
    db.commit()
    return editor, project


def test_active_runs_are_capped_per_project(
    client: TestClient, db: Session, quota: SetQuota
) -> None:
    quota(active_runs_per_project=2)
    editor, project = _editor_project(db)
    url = f"/v1/projects/{project.id}/runs"
    first = client.post(url, json=_local_run("a"), headers=editor.headers)
    assert first.status_code == 201, first.text
    assert client.post(url, json=_local_run("b"), headers=editor.headers).status_code == 201
    refused = client.post(url, json=_local_run("c"), headers=editor.headers)
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"
    body = refused.json()
    assert body["code"] == "quota_exceeded"
    assert body["limit"] == 2
    assert "STRATUS_QUOTAS__ACTIVE_RUNS_PER_PROJECT" in body["detail"]
    # A finished run frees its slot; another project's runs never counted.
    stop = client.post(f"/v1/runs/{first.json()['id']}/stop", headers=editor.headers)
    assert stop.json()["status"] == "stopped"
    assert client.post(url, json=_local_run("c"), headers=editor.headers).status_code == 201
    _, other = _editor_project(db)
    make_run(db, other, status="running")
    db.commit()


def test_runs_are_refused_once_spent_committed_and_projected_pass_the_budget(
    client: TestClient, db: Session
) -> None:
    # ml.m5.xlarge is $0.23/h: one hour-long run projects $0.23.
    editor, project = _editor_project(db, budget_usd=Decimal("1.00"), default_backend="sagemaker")
    # $0.23 already spent by a finished run the backend billed an hour for.
    make_run(
        db,
        project,
        status="completed",
        spec={"image": "x", "instance_type": "ml.m5.xlarge", "instance_count": 1},
        billable_seconds=3600.0,
    )
    db.commit()
    url = f"/v1/projects/{project.id}/runs"
    for i in range(3):  # 0.23 spent + 3 x 0.23 committed = 0.92
        r = client.post(url, json=_sagemaker_run(f"r{i}"), headers=editor.headers)
        assert r.status_code == 201, r.text
    refused = client.post(url, json=_sagemaker_run("r3"), headers=editor.headers)
    assert refused.status_code == 409, refused.text
    body = refused.json()
    assert body["code"] == "budget_exceeded"
    assert body["spent_usd"] == pytest.approx(0.23)
    assert body["committed_usd"] == pytest.approx(0.69)
    assert body["projected_usd"] == pytest.approx(0.23)
    assert body["budget_usd"] == 1.0
    for figure in ("$0.23", "$0.69", "$1.00"):
        assert figure in body["detail"]
    # Free (unpriced or local) work is never refused for money.
    assert client.post(url, json=_local_run("free"), headers=editor.headers).status_code == 201


def test_a_running_run_commits_only_its_remaining_runtime(client: TestClient, db: Session) -> None:
    editor, project = _editor_project(db, budget_usd=Decimal("0.50"), default_backend="sagemaker")
    # Started 45 minutes into a 1-hour, $0.23/h job: $0.1725 spent, $0.0575 still to come.
    make_run(
        db,
        project,
        status="running",
        spec={
            "image": "x",
            "instance_type": "ml.m5.xlarge",
            "instance_count": 1,
            "max_runtime_seconds": 3600,
        },
        started_at=utcnow() - timedelta(minutes=45),
    )
    db.commit()
    url = f"/v1/projects/{project.id}/runs"
    assert client.post(url, json=_sagemaker_run("ok"), headers=editor.headers).status_code == 201
    refused = client.post(url, json=_sagemaker_run("over"), headers=editor.headers).json()
    assert refused["code"] == "budget_exceeded"
    assert refused["spent_usd"] == pytest.approx(0.1725, abs=0.002)
    assert refused["committed_usd"] == pytest.approx(0.0575 + 0.23, abs=0.002)


def test_no_budget_means_no_check(client: TestClient, db: Session) -> None:
    editor, project = _editor_project(db, default_backend="sagemaker")
    r = client.post(
        f"/v1/projects/{project.id}/runs",
        json=_sagemaker_run("big", "ml.p4d.24xlarge", 64),
        headers=editor.headers,
    )
    assert r.status_code == 201, r.text


def _deploy(client: TestClient, key: Key, project: Any, model: Any, **body: Any) -> Any:
    body = {"model_version_id": str(model.id)} | body
    return client.post(f"/v1/projects/{project.id}/deployments", json=body, headers=key.headers)


def test_deployments_count_their_next_hour_against_the_budget(
    client: TestClient, db: Session
) -> None:
    # ml.m5.large is $0.115/h.
    editor, project = _editor_project(db, budget_usd=Decimal("0.50"), default_backend="sagemaker")
    model = make_model_version(db, project)
    db.commit()
    ok = _deploy(
        client, editor, project, model, name="a", instance_type="ml.m5.large", desired_instances=2
    )
    assert ok.status_code == 201, ok.text
    refused = _deploy(
        client, editor, project, model, name="b", instance_type="ml.m5.large", desired_instances=3
    )
    assert refused.status_code == 409
    body = refused.json()
    assert body["code"] == "budget_exceeded"
    assert body["committed_usd"] == pytest.approx(0.23)
    assert body["projected_usd"] == pytest.approx(0.345)
    # A PATCH that raises capacity is checked on the increase only: +2 fits, +3 more does not.
    url = f"/v1/deployments/{ok.json()['id']}"
    grown = client.patch(url, json={"desired_instances": 4}, headers=editor.headers)
    assert grown.status_code == 200, grown.text
    too_much = client.patch(url, json={"max_instances": 8}, headers=editor.headers)
    assert too_much.status_code == 409
    assert too_much.json()["code"] == "budget_exceeded"
    # Lowering is always allowed.
    assert client.patch(url, json={"desired_instances": 1}, headers=editor.headers).is_success


def test_desired_instances_are_capped_per_project(
    client: TestClient, db: Session, quota: SetQuota
) -> None:
    quota(deployment_instances_per_project=4)
    editor, project = _editor_project(db)
    model = make_model_version(db, project)
    db.commit()
    first = _deploy(client, editor, project, model, name="a", desired_instances=3, max_instances=4)
    assert first.status_code == 201, first.text
    refused = _deploy(client, editor, project, model, name="b", desired_instances=2)
    assert refused.status_code == 409
    body = refused.json()
    assert body["code"] == "quota_exceeded"
    assert body["limit"] == 4
    assert "STRATUS_QUOTAS__DEPLOYMENT_INSTANCES_PER_PROJECT" in body["detail"]
    assert _deploy(client, editor, project, model, name="b", desired_instances=1).status_code == 201
    url = f"/v1/deployments/{first.json()['id']}"
    scale_up = client.patch(url, json={"desired_instances": 4}, headers=editor.headers)
    assert scale_up.status_code == 409
    assert scale_up.json()["code"] == "quota_exceeded"
    # A deleted deployment gives its instances back.
    second_id = client.get(
        f"/v1/projects/{project.id}/deployments?status=creating", headers=editor.headers
    ).json()["items"][0]["id"]
    client.delete(f"/v1/deployments/{second_id}", headers=editor.headers)
    assert client.patch(url, json={"desired_instances": 4}, headers=editor.headers).is_success


def test_the_optimizer_clamps_to_the_instance_quota(db: Session, quota: SetQuota) -> None:
    quota(deployment_instances_per_project=3)
    project = make_project(db)
    make_deployment(db, project, status="in_service", desired_instances=1, current_instances=1)
    deployment = make_deployment(
        db,
        project,
        status="in_service",
        desired_instances=1,
        current_instances=1,
        max_instances=8,
        scaling_policy=POLICY | {"max_step": 4},
    )
    overloaded(db, deployment)
    optimizer.optimize(db, deployment.id, utcnow())
    db.refresh(deployment)
    decision = db.scalars(select(OptimizerDecision)).one()
    assert deployment.desired_instances == 2  # 3 minus the other deployment's 1
    assert decision.desired_instances == 2
    assert "STRATUS_QUOTAS__DEPLOYMENT_INSTANCES_PER_PROJECT" in decision.reason


def _names_batch(*names: str) -> dict[str, Any]:
    return {"points": [{"name": n, "value": 1.0, "step": i} for i, n in enumerate(names)]}


def _stored_names(db: Session, subject_id: Any) -> set[str]:
    return set(db.scalars(select(MetricPoint.name).where(MetricPoint.subject_id == subject_id)))


@pytest.fixture
def name_walks(pg_engine: Engine) -> Iterator[list[str]]:
    """The statements that walk a subject's distinct metric names, as they run."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        statement = args[2]
        if "WITH RECURSIVE names" in statement:
            seen.append(statement)

    event.listen(pg_engine, "before_cursor_execute", record)
    yield seen
    event.remove(pg_engine, "before_cursor_execute", record)


def test_metric_names_per_run_are_capped_with_one_query_only_for_unknown_names(
    client: TestClient, db: Session, quota: SetQuota, name_walks: list[str]
) -> None:
    quota(metric_names_per_subject=3)
    editor, project = _editor_project(db)
    run = make_run(db, project, status="running")
    db.commit()
    url = f"/v1/runs/{run.id}/metrics"
    assert client.post(url, json=_names_batch("loss", "acc"), headers=editor.headers).is_success
    assert client.post(url, json=_names_batch("loss", "acc"), headers=editor.headers).is_success
    assert len(name_walks) == 2  # the second batch learns that both names are stored
    name_walks.clear()
    for _ in range(3):  # known names: no query at all
        ok = client.post(url, json=_names_batch("acc", "loss", "loss"), headers=editor.headers)
        assert ok.status_code == 201
    assert name_walks == []
    refused = client.post(url, json=_names_batch("loss", "lr", "f1"), headers=editor.headers)
    assert refused.status_code == 422
    body = refused.json()
    assert body["code"] == "too_many_metric_names"
    assert body["limit"] == 3
    assert "at most 3 distinct metric names" in body["detail"]
    assert "STRATUS_QUOTAS__METRIC_NAMES_PER_SUBJECT" in body["detail"]
    assert len(name_walks) == 1
    assert _stored_names(db, run.id) == {"loss", "acc"}  # nothing of the refused batch
    assert client.post(url, json=_names_batch("lr"), headers=editor.headers).status_code == 201
    assert _stored_names(db, run.id) == {"loss", "acc", "lr"}


def test_pulled_metrics_drop_names_over_the_limit_with_a_note(db: Session, quota: SetQuota) -> None:
    quota(metric_names_per_subject=2)
    project = make_project(db)
    run = make_run(db, project, status="running")
    now = utcnow()
    page = MetricPage(
        points=tuple(
            TrainingMetric(name, 1.0, now, 1) for name in ("loss", "acc", "zeta", "alpha")
        ),
        next_cursor="c1",
    )
    assert run_lifecycle.store_training_metrics(db, run.id, page) == 2
    assert _stored_names(db, run.id) == {"acc", "alpha"}  # sorted order wins, the rest drop
    db.refresh(run)
    assert run.metrics_cursor == "c1"  # the pull goes on past them
    assert run.status_reason is not None
    assert "2 metric name(s) dropped" in run.status_reason
    assert "STRATUS_QUOTAS__METRIC_NAMES_PER_SUBJECT" in run.status_reason
    deployment = make_deployment(db, project, status="in_service")
    samples = [MetricSample(n, now, 1.0) for n in ("invocations", "latency", "errors")]
    assert deployment_lifecycle.store_endpoint_metrics(db, deployment.id, samples, now) == 2
    assert _stored_names(db, deployment.id) == {"errors", "invocations"}
    db.refresh(deployment)
    assert deployment.metrics_synced_until is not None
    assert deployment.status_reason is not None
    assert "dropped" in deployment.status_reason


def test_a_full_quota_holds_the_optimizer_without_failing(db: Session, quota: SetQuota) -> None:
    quota(deployment_instances_per_project=2)
    project = make_project(db)
    make_deployment(db, project, status="in_service", desired_instances=2, current_instances=2)
    deployment = make_deployment(
        db,
        project,
        status="in_service",
        desired_instances=1,
        current_instances=1,
        max_instances=8,
        scaling_policy=POLICY,
    )
    overloaded(db, deployment)
    assert not optimizer.optimize(db, deployment.id, utcnow())
    db.refresh(deployment)
    assert deployment.desired_instances == 1  # held where it was, never shrunk by the quota
    decision = db.scalars(select(OptimizerDecision)).one()
    assert (decision.desired_instances, decision.applied) == (1, False)


def test_budget_and_run_quota_hold_on_the_embedded_sqlite_database(
    sqlite_client: TestClient, sqlite_factory: Any, quota: SetQuota
) -> None:
    quota(active_runs_per_project=3)
    with sqlite_factory() as session:
        editor = make_key(session)
        project = make_project(
            session, (editor, Role.EDITOR), budget_usd=Decimal("0.50"), default_backend="sagemaker"
        )
        session.commit()
    url = f"/v1/projects/{project.id}/runs"
    for name in ("a", "b"):  # 2 x $0.23
        assert sqlite_client.post(url, json=_sagemaker_run(name), headers=editor.headers).is_success
    over_budget = sqlite_client.post(url, json=_sagemaker_run("c"), headers=editor.headers)
    assert over_budget.json()["code"] == "budget_exceeded"
    assert sqlite_client.post(url, json=_local_run("d"), headers=editor.headers).is_success
    over_quota = sqlite_client.post(url, json=_local_run("e"), headers=editor.headers)
    assert over_quota.json()["code"] == "quota_exceeded"
