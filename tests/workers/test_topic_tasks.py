"""Topic tasks run in-process against committed rows: with no backend configured they record
why the object waits and keep the message; with nothing left to do they acknowledge it."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from app.clock import utcnow
from app.domain.deployments.models import Deployment
from app.domain.outbox import repository as outbox_repository
from app.domain.outbox import service as outbox
from app.domain.outbox.models import OutboxMessage
from app.domain.runs.models import TrainingRun
from app.settings import get_settings
from tests.factories import make_deployment, make_project, make_run
from tests.workers.conftest import UnitOfWork
from workers.celery_app import celery_app
from workers.tasks import runs as run_tasks
from workers.tasks.outbox import TOPIC_TASKS

pytestmark = pytest.mark.usefixtures("app_on_pg")


def run_with_message(committed: UnitOfWork, topic: str, status: str) -> tuple[uuid.UUID, int]:
    with committed() as session:
        run = make_run(session, make_project(session), status=status)
        message = outbox.enqueue(session, topic, run_id=str(run.id))
        session.flush()
        return run.id, message.id


def deployment_with_message(
    committed: UnitOfWork, topic: str, status: str
) -> tuple[uuid.UUID, int]:
    with committed() as session:
        deployment = make_deployment(session, make_project(session), status=status)
        message = outbox.enqueue(session, topic, deployment_id=str(deployment.id))
        session.flush()
        return deployment.id, message.id


def load_message(committed: UnitOfWork, message_id: int) -> OutboxMessage:
    with committed() as session:
        message = outbox_repository.get(session, message_id)
        assert message is not None
        return message


def test_every_topic_has_a_registered_task_with_a_stable_name() -> None:
    assert {topic: task.name for topic, task in TOPIC_TASKS.items()} == {
        outbox.RUN_SUBMIT: "stratus.runs.submit",
        outbox.RUN_STOP: "stratus.runs.stop",
        outbox.DEPLOYMENT_CREATE: "stratus.deployments.create",
        outbox.DEPLOYMENT_UPDATE: "stratus.deployments.update",
        outbox.DEPLOYMENT_DELETE: "stratus.deployments.delete",
        outbox.WEBHOOK_DELIVER: "stratus.webhooks.deliver",
        outbox.DEPLOYMENT_ROLL: "stratus.deployments.roll",
        outbox.EVALUATION_SUBMIT: "stratus.evaluations.submit",
        outbox.EVALUATION_STOP: "stratus.evaluations.stop",
    }
    assert all(task.name in celery_app.tasks for task in TOPIC_TASKS.values())


def test_submit_without_a_backend_records_the_wait_and_backs_off(committed: UnitOfWork) -> None:
    run_id, message_id = run_with_message(committed, outbox.RUN_SUBMIT, "pending")
    worker = get_settings().worker
    before = utcnow()

    run_tasks.submit_run(message_id)

    with committed() as session:
        run = session.get(TrainingRun, run_id)
        assert run is not None
        assert run.status == "pending"
        assert run.status_reason == (
            "no compute backend is configured for 'local' yet; "
            "the run stays pending and will be submitted when one is"
        )
    first = load_message(committed, message_id)
    assert first.processed_at is None
    assert first.attempts == 1
    assert first.last_error == run.status_reason
    assert first.available_at >= before + timedelta(seconds=worker.outbox_retry_base_s)

    run_tasks.submit_run(message_id)  # a redelivery, or the next relay after the backoff

    second = load_message(committed, message_id)
    assert second.processed_at is None
    assert second.attempts == 2
    assert second.available_at - first.available_at >= timedelta(
        seconds=worker.outbox_retry_base_s
    ), "the backoff grows"


def test_stop_without_a_backend_records_the_wait(committed: UnitOfWork) -> None:
    run_id, message_id = run_with_message(committed, outbox.RUN_STOP, "stopping")
    run_tasks.stop_run(message_id)
    with committed() as session:
        run = session.get(TrainingRun, run_id)
        assert run is not None
        assert run.status == "stopping"
        assert run.status_reason is not None
        assert "no compute backend is configured for 'local'" in run.status_reason
    assert load_message(committed, message_id).attempts == 1


@pytest.mark.parametrize(
    ("topic", "status"),
    [
        (outbox.RUN_SUBMIT, "stopped"),  # stopped before it was ever submitted
        (outbox.RUN_SUBMIT, "failed"),
        (outbox.RUN_STOP, "completed"),  # finished on its own before the stop landed
    ],
)
def test_a_finished_run_acknowledges_the_message(
    committed: UnitOfWork, topic: str, status: str
) -> None:
    run_id, message_id = run_with_message(committed, topic, status)
    TOPIC_TASKS[topic](message_id)
    message = load_message(committed, message_id)
    assert message.processed_at is not None
    with committed() as session:
        run = session.get(TrainingRun, run_id)
        assert run is not None
        assert run.status == status
        assert run.status_reason is None


@pytest.mark.parametrize("payload", [{"run_id": str(uuid.uuid4())}, {"run_id": "nonsense"}, {}])
def test_a_missing_run_acknowledges_the_message(
    committed: UnitOfWork, payload: dict[str, str]
) -> None:
    with committed() as session:
        message = outbox.enqueue(session, outbox.RUN_SUBMIT, **payload)
        session.flush()
        message_id = message.id
    run_tasks.submit_run(message_id)
    assert load_message(committed, message_id).processed_at is not None


def test_a_processed_or_unknown_message_is_left_alone(committed: UnitOfWork) -> None:
    run_id, message_id = run_with_message(committed, outbox.RUN_SUBMIT, "pending")
    with committed() as session:
        outbox.acknowledge(session, message_id)
    run_tasks.submit_run(message_id)
    run_tasks.submit_run(message_id + 1000)
    with committed() as session:
        run = session.get(TrainingRun, run_id)
        assert run is not None
        assert run.status_reason is None
    assert load_message(committed, message_id).attempts == 0


@pytest.mark.parametrize(
    ("topic", "status", "verb"),
    [
        (outbox.DEPLOYMENT_CREATE, "creating", "created"),
        (outbox.DEPLOYMENT_UPDATE, "updating", "resized"),
        (outbox.DEPLOYMENT_DELETE, "deleting", "deleted"),
    ],
)
def test_deployment_work_without_a_backend_waits(
    committed: UnitOfWork, topic: str, status: str, verb: str
) -> None:
    deployment_id, message_id = deployment_with_message(committed, topic, status)
    TOPIC_TASKS[topic](message_id)
    with committed() as session:
        deployment = session.get(Deployment, deployment_id)
        assert deployment is not None
        assert deployment.status == status
        assert deployment.status_reason == (
            f"no compute backend is configured for 'local' yet; "
            f"the deployment stays {status} and will be {verb} when one is"
        )
    message = load_message(committed, message_id)
    assert message.processed_at is None
    assert message.attempts == 1
    assert message.available_at > utcnow()


@pytest.mark.parametrize(
    ("topic", "status"),
    [
        (outbox.DEPLOYMENT_CREATE, "deleting"),  # deleted before the endpoint came up
        (outbox.DEPLOYMENT_CREATE, "deleted"),
        (outbox.DEPLOYMENT_DELETE, "deleted"),
    ],
)
def test_superseded_deployment_work_is_acknowledged(
    committed: UnitOfWork, topic: str, status: str
) -> None:
    _, message_id = deployment_with_message(committed, topic, status)
    TOPIC_TASKS[topic](message_id)
    assert load_message(committed, message_id).processed_at is not None
