"""A submit wake-up relayed again while its first delivery is still submitting.

The relay leases a message for ``outbox_lease_s`` and its wake-up expires after as long, but a
wake-up that starts just before then may run for up to ``task_time_limit_s`` more: once the
lease lapses the relay sends the message again and two submit tasks for one run overlap (a
queue backlog of about a lease does it; 300 s by default, the same as the task time limit).
"""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import select

from app.backends.naming import job_name
from app.domain.outbox import service as outbox
from app.domain.outbox.models import OutboxMessage
from tests.integration.conftest import Api, CreateLog, moto_backend
from tests.workers.conftest import UnitOfWork
from workers.tasks.runs import submit_run


def topic_messages(committed: UnitOfWork, topic: str) -> list[OutboxMessage]:
    with committed() as session:
        return list(
            session.scalars(
                select(OutboxMessage).where(OutboxMessage.topic == topic).order_by(OutboxMessage.id)
            )
        )


@pytest.fixture
def overlapped(api: Api, create_log: CreateLog, committed: UnitOfWork) -> tuple[str, str]:
    """Two deliveries of one submit: the first is inside CreateTrainingJob (not served yet)
    while the second runs from start to end. Returns (run id, job name)."""
    run_id = api.create_run()["id"]
    name = job_name(uuid.UUID(run_id))
    (message,) = topic_messages(committed, outbox.RUN_SUBMIT)
    arrived, release = threading.Event(), threading.Event()

    def hold_the_first(_: str) -> None:
        if not arrived.is_set():
            arrived.set()
            release.wait(30)

    create_log.before_create = hold_the_first
    first = threading.Thread(target=submit_run, args=(message.id,))
    first.start()
    try:
        assert arrived.wait(30)
        submit_run(message.id)  # the copy relayed after the lease lapsed
    finally:
        release.set()
        first.join(30)
    assert not first.is_alive()
    return run_id, name


def test_overlapping_submits_make_one_job(
    overlapped: tuple[str, str], api: Api, create_log: CreateLog
) -> None:
    run_id, name = overlapped
    assert list(moto_backend().training_jobs) == [name]
    assert create_log.accepted == {name: 1}
    run = api.get(f"/v1/runs/{run_id}")
    assert (run["status"], run["external_id"]) == (
        "running",
        moto_backend().training_jobs[name].arn,
    )


def test_overlapping_submits_send_one_create_training_job(
    overlapped: tuple[str, str], create_log: CreateLog
) -> None:
    _, name = overlapped
    assert create_log.requests == {name: 1}


def test_late_submit_of_a_running_run_queues_no_stop(
    overlapped: tuple[str, str], api: Api, committed: UnitOfWork
) -> None:
    run_id, _ = overlapped
    assert api.get(f"/v1/runs/{run_id}")["status"] == "running"
    assert topic_messages(committed, outbox.RUN_STOP) == []
