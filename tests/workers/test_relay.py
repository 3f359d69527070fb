"""The outbox relay and the topic tasks end to end on the real Redis broker and a real worker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
import redis
from celery.worker import WorkController
from sqlalchemy import update

from app.clock import utcnow
from app.domain.outbox import repository as outbox_repository
from app.domain.outbox import service as outbox
from app.domain.outbox.models import OutboxMessage
from app.domain.runs import service as runs_service
from app.domain.runs.models import TrainingRun
from app.domain.runs.schemas import RunCreate, RunSpec
from app.settings import Settings, get_settings
from tests.factories import LOCAL_SPEC, RECOMMENDER, make_key, make_project
from tests.workers.conftest import UnitOfWork, reset_celery, wait_for
from workers.tasks.outbox import relay_outbox


def create_run(committed: UnitOfWork) -> tuple[TrainingRun, int]:
    """A pending run and its submit message, written the way the API writes them."""
    with committed() as session:
        key = make_key(session, admin=True)
        project = make_project(session)
        run = runs_service.create_run(
            session,
            key.principal,
            project.id,
            RunCreate(name="baseline", spec=RunSpec(**LOCAL_SPEC)),
            Settings(backends={"local": {"host_roots": [RECOMMENDER]}}),
        )
        message_id = session.query(OutboxMessage.id).one()[0]
    with committed() as session:
        stored = session.get(TrainingRun, run.id)
        assert stored is not None
        return stored, message_id


def queued_tasks(redis_url: str, queue: str) -> list[str]:
    client = redis.Redis.from_url(redis_url)
    try:
        return [json.loads(raw)["headers"]["task"] for raw in client.lrange(queue, 0, -1)]
    finally:
        client.close()


@contextmanager
def broker(url: str, queue: str) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STRATUS_BROKER_URL", url)
        get_settings.cache_clear()
        reset_celery(queue)
        yield
    get_settings.cache_clear()
    reset_celery(queue)


def test_a_pending_run_is_relayed_to_a_worker_and_waits_for_a_backend(
    committed: UnitOfWork, celery_worker: WorkController
) -> None:
    run, message_id = create_run(committed)
    assert run.status == "pending"
    assert run.status_reason is None

    relay_outbox.delay()  # the worker relays, then runs the submit task it published

    def reason() -> str | None:
        with committed() as session:
            current = session.get(TrainingRun, run.id)
            assert current is not None
            return current.status_reason

    assert wait_for(reason) == (
        "no compute backend is configured for 'local' yet; "
        "the run stays pending and will be submitted when one is"
    )
    with committed() as session:
        current = session.get(TrainingRun, run.id)
        message = outbox_repository.get(session, message_id)
        assert current is not None
        assert message is not None
        assert current.status == "pending"
        assert message.processed_at is None
        assert message.attempts >= 1
        assert message.available_at > utcnow()
        assert message.last_error == current.status_reason


def test_a_claimed_message_is_published_once_per_lease(
    committed: UnitOfWork, celery_queue: str, redis_url: str
) -> None:
    create_run(committed)
    assert relay_outbox() == 1
    assert queued_tasks(redis_url, celery_queue) == ["stratus.runs.submit"]
    assert relay_outbox() == 0, "claimed and not yet expired: not sent again"
    assert queued_tasks(redis_url, celery_queue) == ["stratus.runs.submit"]


def test_a_failed_publish_loses_nothing(
    committed: UnitOfWork, celery_queue: str, redis_url: str
) -> None:
    _, message_id = create_run(committed)
    with broker("redis://127.0.0.1:1/0", celery_queue):
        assert relay_outbox() == 0
    with committed() as session:
        message = outbox_repository.get(session, message_id)
        assert message is not None
        assert message.processed_at is None
        assert message.attempts == 0
        assert message.available_at > utcnow(), "leased: the next relay does not resend it yet"
        # The lease runs out.
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == message_id)
            .values(available_at=utcnow() - timedelta(seconds=1))
        )
    assert relay_outbox() == 1
    assert queued_tasks(redis_url, celery_queue) == ["stratus.runs.submit"]


def test_a_message_of_unknown_topic_is_deferred_not_published(
    committed: UnitOfWork, celery_queue: str, redis_url: str
) -> None:
    with committed() as session:
        message = outbox.enqueue(session, "run.teleport", run_id="x")
        session.flush()
        message_id = message.id
    assert relay_outbox() == 0
    assert queued_tasks(redis_url, celery_queue) == []
    with committed() as session:
        stored = outbox_repository.get(session, message_id)
        assert stored is not None
        assert stored.attempts == 1
        assert stored.last_error == "no task handles topic 'run.teleport'"
