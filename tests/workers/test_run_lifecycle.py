"""A run through its backend: exactly-once submission, polling, stop, live metrics, and the
model version a completed run leaves behind. Real PostgreSQL, committed rows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from app.backends import registry
from app.backends.base import BackendError, JobState, JobStatus, TrainingMetric
from app.backends.naming import job_name
from app.domain.access import Principal
from app.domain.metrics.models import MetricPoint
from app.domain.model_versions.models import ModelVersion
from app.domain.outbox import service as outbox
from app.domain.outbox.models import OutboxMessage
from app.domain.runs import service as runs_service
from app.domain.runs.models import TrainingRun
from app.domain.runs.states import RunStatus
from tests.factories import make_key, make_project, make_run
from tests.workers.conftest import UnitOfWork
from tests.workers.scripted_backend import ScriptedBackend
from workers.tasks import runs as run_tasks

pytestmark = pytest.mark.usefixtures("app_on_pg")
SPEC = {
    "entrypoint": "train.py",
    "instance_type": "local",
    "hyperparameters": {"epochs": 3},
    "metric_definitions": [{"name": "loss", "regex": "loss=([0-9.]+)"}],
}


@pytest.fixture
def backend() -> Iterator[ScriptedBackend]:
    scripted = ScriptedBackend()
    with registry.override("local", scripted):
        yield scripted


def pending_run(committed: UnitOfWork, status: str = "pending") -> tuple[uuid.UUID, int]:
    with committed() as session:
        run = make_run(session, make_project(session), status=status, spec=SPEC, name="recs")
        message = outbox.enqueue(session, outbox.RUN_SUBMIT, run_id=str(run.id))
        session.flush()
        return run.id, message.id


def load(committed: UnitOfWork, run_id: uuid.UUID) -> TrainingRun:
    with committed() as session:
        run = session.get(TrainingRun, run_id)
        assert run is not None
        return run


def processed(committed: UnitOfWork, message_id: int) -> bool:
    with committed() as session:
        message = session.get(OutboxMessage, message_id)
        assert message is not None
        return message.processed_at is not None


def test_submit_creates_the_job_once_and_runs(
    committed: UnitOfWork, backend: ScriptedBackend
) -> None:
    run_id, message_id = pending_run(committed)
    run_tasks.submit_run(message_id)
    run_tasks.submit_run(message_id)  # a duplicate delivery changes nothing
    run = load(committed, run_id)
    assert run.status == "running"
    assert run.external_id == f"job/{job_name(run_id)}"
    assert backend.calls["submit_training"] == 1
    spec = backend.specs[job_name(run_id)]
    assert spec.hyperparameters == {"epochs": 3}
    assert spec.metric_definitions[0].regex == "loss=([0-9.]+)"
    assert processed(committed, message_id)


def test_retried_submit_finds_the_job_an_earlier_attempt_made(
    committed: UnitOfWork, backend: ScriptedBackend
) -> None:
    # The worker died after creating the job but before recording it.
    run_id, message_id = pending_run(committed, status="submitting")
    name = job_name(run_id)
    backend.jobs[name] = JobStatus(name, f"job/{name}", JobState.RUNNING)
    run_tasks.submit_run(message_id)
    assert backend.calls["submit_training"] == 0
    assert load(committed, run_id).status == "running"


def test_retried_submit_without_a_job_submits_it(
    committed: UnitOfWork, backend: ScriptedBackend
) -> None:
    run_id, message_id = pending_run(committed, status="submitting")
    run_tasks.submit_run(message_id)
    assert backend.calls["submit_training"] == 1
    assert load(committed, run_id).status == "running"


def test_refused_submit_fails_the_run_with_the_reason(
    committed: UnitOfWork, backend: ScriptedBackend
) -> None:
    run_id, message_id = pending_run(committed)
    backend.fail_next["submit_training"] = BackendError("no such image", retryable=False)
    run_tasks.submit_run(message_id)
    run = load(committed, run_id)
    assert (run.status, run.failure_reason) == ("failed", "no such image")
    assert processed(committed, message_id)


def test_throttled_submit_keeps_the_message_and_the_run(
    committed: UnitOfWork, backend: ScriptedBackend
) -> None:
    run_id, message_id = pending_run(committed)
    backend.fail_next["submit_training"] = BackendError("ThrottlingException", retryable=True)
    run_tasks.submit_run(message_id)
    assert load(committed, run_id).status == "submitting"
    assert not processed(committed, message_id)
    run_tasks.submit_run(message_id)  # the redelivery after the backoff
    assert load(committed, run_id).status == "running"
    assert backend.calls["submit_training"] == 2


def test_poll_completes_the_run_with_metrics_and_a_model_version(
    committed: UnitOfWork, backend: ScriptedBackend
) -> None:
    run_id, message_id = pending_run(committed)
    run_tasks.submit_run(message_id)
    name = job_name(run_id)
    # Still starting on the backend while Stratus already says running: reported, so its
    # finer phase is recorded (a job whose state did not move is not described at all).
    backend.set_job(name, JobState.STARTING, secondary_status="Downloading")
    backend.metrics[name] = [
        TrainingMetric("loss", 0.9, datetime.now(UTC), step=1),
        TrainingMetric("loss", 0.5, datetime.now(UTC), step=2),
    ]
    run_tasks.poll_once("local")
    run = load(committed, run_id)
    assert (run.status, run.secondary_status, run.metrics_cursor) == ("running", "Downloading", "2")
    # The job prints its last value and ends between two polls.
    backend.metrics[name].append(TrainingMetric("loss", 0.25, datetime.now(UTC), step=3))
    backend.set_job(
        name,
        JobState.COMPLETED,
        artifact_uri="file:///tmp/model.tar.gz",
        final_metrics={"loss": 0.25},
        billable_seconds=42.0,
    )
    run_tasks.poll_once("local")
    run = load(committed, run_id)
    assert run.status == "completed"
    assert run.final_metrics == {"loss": 0.25}
    assert run.billable_seconds == 42.0
    assert run.ended_at is not None
    with committed() as session:
        points = session.execute(
            select(MetricPoint.step, MetricPoint.value)
            .where(MetricPoint.subject_id == run_id)
            .order_by(MetricPoint.id)
        ).all()
        # One point per scrape, each at its step; the final value is not stored again.
        assert [tuple(p) for p in points] == [(1, 0.9), (2, 0.5), (3, 0.25)]
        model = session.scalar(select(ModelVersion).where(ModelVersion.source_run_id == run_id))
        assert model is not None
        assert (model.name, model.version, model.artifact_uri) == ("recs", 1, run.artifact_uri)
    run_tasks.poll_once("local")  # nothing in flight any more: no second model version
    with committed() as session:
        assert len(session.scalars(select(ModelVersion)).all()) == 1


def test_failed_job_reason_reaches_the_run(committed: UnitOfWork, backend: ScriptedBackend) -> None:
    run_id, message_id = pending_run(committed)
    run_tasks.submit_run(message_id)
    backend.set_job(job_name(run_id), JobState.FAILED, failure_reason="OOM at epoch 2")
    run_tasks.poll_once("local")
    run = load(committed, run_id)
    assert (run.status, run.failure_reason) == ("failed", "OOM at epoch 2")


def test_stop_goes_through_stopping_to_stopped(
    committed: UnitOfWork, backend: ScriptedBackend
) -> None:
    run_id, message_id = pending_run(committed)
    run_tasks.submit_run(message_id)
    backend.set_job(job_name(run_id), JobState.RUNNING)
    with committed() as session:
        key = make_key(session, admin=True)
        principal = Principal(key.id, "admin", True)
        assert runs_service.stop_run(session, principal, run_id).status == "stopping"
        stop_id = session.scalars(
            select(OutboxMessage.id).where(OutboxMessage.topic == outbox.RUN_STOP)
        ).one()
    run_tasks.stop_run(stop_id)
    assert backend.calls["stop_training"] == 1
    assert processed(committed, stop_id)
    run_tasks.poll_once("local")
    assert load(committed, run_id).status == "stopping"
    backend.set_job(job_name(run_id), JobState.STOPPED)
    run_tasks.poll_once("local")
    assert load(committed, run_id).status == "stopped"


def test_stop_during_submit_reaches_the_job_it_made(
    committed: UnitOfWork, backend: ScriptedBackend
) -> None:
    run_id, message_id = pending_run(committed, status="submitting")
    name = job_name(run_id)
    backend.jobs[name] = JobStatus(name, f"job/{name}", JobState.RUNNING)  # made, not recorded
    with committed() as session:
        assert runs_service.transition(session, run_id, RunStatus.SUBMITTING, RunStatus.STOPPING)
    run_tasks.submit_run(message_id)  # the redelivered submit finds the job and stops it
    run = load(committed, run_id)
    assert (run.status, run.external_id) == ("stopping", f"job/{name}")
    assert backend.calls["submit_training"] == 0
    with committed() as session:
        stop_id = session.scalars(
            select(OutboxMessage.id).where(OutboxMessage.topic == outbox.RUN_STOP)
        ).one()
    run_tasks.stop_run(stop_id)
    assert backend.calls["stop_training"] == 1


def test_stop_during_submit_before_any_job_finishes_the_stop(
    committed: UnitOfWork, backend: ScriptedBackend
) -> None:
    run_id, message_id = pending_run(committed, status="submitting")
    with committed() as session:
        assert runs_service.transition(session, run_id, RunStatus.SUBMITTING, RunStatus.STOPPING)
    run_tasks.submit_run(message_id)
    run = load(committed, run_id)
    assert (run.status, run.status_reason) == ("stopped", "stopped before a job existed")
    assert backend.calls["submit_training"] == 0
    assert processed(committed, message_id)


def test_throttled_poll_backs_off_and_fails_nothing(
    committed: UnitOfWork, backend: ScriptedBackend
) -> None:
    run_id, message_id = pending_run(committed)
    run_tasks.submit_run(message_id)
    backend.fail_next["describe_jobs"] = BackendError("ThrottlingException", retryable=True)
    assert run_tasks.poll_once("local") == 0
    assert load(committed, run_id).status == "running"
    calls = backend.calls["describe_jobs"]
    assert run_tasks.poll_once("local") == 0  # backing off: no call at all
    assert backend.calls["describe_jobs"] == calls
