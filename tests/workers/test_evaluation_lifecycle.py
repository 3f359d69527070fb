"""An evaluation through the run job pipeline on PostgreSQL: submitted once with the model as
its ``model`` channel, polled to completion with its final metrics and points; and a
deployment following an alias rolled to the version the alias moves to."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from app.backends import registry
from app.backends.base import EndpointSpec, EndpointState, JobState, TrainingMetric
from app.backends.naming import endpoint_name, evaluation_job_name
from app.domain.deployments.models import Deployment
from app.domain.deployments.service import roll_to_version
from app.domain.evaluations.models import Evaluation
from app.domain.metrics.models import MetricPoint
from app.domain.outbox import service as outbox
from app.domain.outbox.models import OutboxMessage
from tests.factories import make_deployment, make_evaluation, make_model_version, make_project
from tests.workers.conftest import UnitOfWork
from tests.workers.scripted_backend import ScriptedBackend
from workers.tasks import deployments as deployment_tasks
from workers.tasks import evaluations as evaluation_tasks
from workers.tasks import runs as run_tasks

pytestmark = pytest.mark.usefixtures("app_on_pg")
SPEC = {
    "entrypoint": "evaluate.py",
    "instance_type": "local",
    "hyperparameters": {"k": 10},
    "metric_definitions": [{"name": "ndcg_at_10", "regex": "ndcg@10=([0-9.]+)"}],
}
ARTIFACT = "file:///models/recs/v1/model.tar.gz"


@pytest.fixture
def backend() -> Iterator[ScriptedBackend]:
    scripted = ScriptedBackend()
    with registry.override("local", scripted):
        yield scripted


def _message(committed: UnitOfWork, topic: str, **payload: str) -> int:
    with committed() as session:
        message = outbox.enqueue(session, topic, **payload)
        session.flush()
        return message.id


def _evaluation(committed: UnitOfWork, evaluation_id: uuid.UUID) -> Evaluation:
    with committed() as session:
        found = session.get(Evaluation, evaluation_id)
        assert found is not None
        return found


def test_submitted_once_polled_to_completion(
    committed: UnitOfWork, backend: ScriptedBackend
) -> None:
    with committed() as session:
        project = make_project(session)
        model = make_model_version(session, project, artifact_uri=ARTIFACT, framework="pytorch")
        evaluation_id = make_evaluation(session, model, spec=SPEC).id
    message = _message(committed, outbox.EVALUATION_SUBMIT, evaluation_id=str(evaluation_id))
    evaluation_tasks.submit_evaluation(message)
    evaluation_tasks.submit_evaluation(message)  # a duplicate delivery changes nothing
    name = evaluation_job_name(evaluation_id)
    assert backend.calls["submit_training"] == 1
    spec = backend.specs[name]
    assert (spec.model_uri, spec.framework, spec.entrypoint) == (ARTIFACT, "pytorch", "evaluate.py")
    assert spec.tags["stratus:evaluation-id"] == str(evaluation_id)
    assert _evaluation(committed, evaluation_id).status == "running"

    at = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    backend.metrics[name] = [TrainingMetric("ndcg_at_10", 0.31, at)]
    backend.set_job(name, JobState.COMPLETED, final_metrics={"ndcg_at_10": 0.31}, ended_at=at)
    assert run_tasks.poll_once("local") == 1
    done = _evaluation(committed, evaluation_id)
    assert (done.status, done.final_metrics, done.ended_at) == (
        "completed",
        {"ndcg_at_10": 0.31},
        at,
    )
    with committed() as session:
        points = session.scalars(
            select(MetricPoint).where(MetricPoint.subject_id == evaluation_id)
        ).all()
        assert [(p.subject_type, p.name, p.value) for p in points] == [
            ("evaluation", "ndcg_at_10", 0.31)
        ]


def test_stop_reaches_the_job(committed: UnitOfWork, backend: ScriptedBackend) -> None:
    with committed() as session:
        model = make_model_version(session, make_project(session), artifact_uri=ARTIFACT)
        evaluation_id = make_evaluation(session, model, spec=SPEC).id
    evaluation_tasks.submit_evaluation(
        _message(committed, outbox.EVALUATION_SUBMIT, evaluation_id=str(evaluation_id))
    )
    backend.set_job(evaluation_job_name(evaluation_id), JobState.RUNNING)
    with committed() as session:
        session.execute(
            Evaluation.__table__.update()
            .where(Evaluation.id == evaluation_id)
            .values(status="stopping")
        )
    evaluation_tasks.stop_evaluation(
        _message(committed, outbox.EVALUATION_STOP, evaluation_id=str(evaluation_id))
    )
    assert backend.calls["stop_training"] == 1
    backend.set_job(evaluation_job_name(evaluation_id), JobState.STOPPED)
    run_tasks.poll_once("local")
    assert _evaluation(committed, evaluation_id).status == "stopped"


def test_a_follower_rolls_to_the_new_version(
    committed: UnitOfWork, backend: ScriptedBackend
) -> None:
    with committed() as session:
        project = make_project(session)
        first = make_model_version(session, project, name="recs", artifact_uri=ARTIFACT)
        second = make_model_version(session, project, name="recs", artifact_uri=ARTIFACT + "2")
        deployment = make_deployment(
            session, project, first, status="in_service", follows="recs@production"
        )
        deployment_id, second_id = deployment.id, second.id
    name = endpoint_name(deployment_id)
    backend.create_endpoint(EndpointSpec(name, ARTIFACT, "local", 1))
    backend.set_endpoint(name, EndpointState.IN_SERVICE, 1)
    with committed() as session:
        assert roll_to_version(session, deployment_id, second_id)
        assert not roll_to_version(session, deployment_id, second_id)  # already pointed there
    (message,) = _pending(committed, outbox.DEPLOYMENT_ROLL)
    deployment_tasks.roll_deployment(message)
    assert backend.calls[f"model={ARTIFACT}2"] == 1
    with committed() as session:
        rolled = session.get(Deployment, deployment_id)
        assert rolled is not None
        assert (rolled.status, rolled.model_version_id) == ("updating", second_id)
    backend.set_endpoint(name, EndpointState.IN_SERVICE, 1)
    deployment_tasks.poll_endpoints("local")
    with committed() as session:
        assert session.get(Deployment, deployment_id).status == "in_service"  # type: ignore[union-attr]


def _pending(committed: UnitOfWork, topic: str) -> list[int]:
    with committed() as session:
        return list(
            session.scalars(
                select(OutboxMessage.id).where(
                    OutboxMessage.topic == topic, OutboxMessage.processed_at.is_(None)
                )
            )
        )
