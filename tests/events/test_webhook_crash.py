"""At least once through a crash: a real Celery worker (prefork) on the real Redis is
SIGKILLed, pool and all, while the receiver holds its delivery request; once the outbox lease
lapses a second worker sends it again with the same ``webhook-id``, so a receiver that dedupes
by it processes the event exactly once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from app.domain.access import Role
from app.domain.runs import service as runs
from app.domain.runs.states import RunStatus
from app.domain.webhooks import service as webhooks
from app.domain.webhooks.models import WebhookDelivery
from app.domain.webhooks.schemas import WebhookCreate
from app.settings import get_settings
from tests.events.receiver import receiver
from tests.factories import make_key, make_project, make_run
from tests.integration.test_sagemaker_crash import LEASE_S, Worker, worker_env
from tests.workers.conftest import UnitOfWork
from workers.tasks.outbox import relay_outbox

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

DEADLINE_S = 60


def _env(pg_url: str, redis_url: str) -> dict[str, str]:
    # The crash test's worker environment (its SageMaker endpoint is never called here).
    env = worker_env(pg_url, redis_url, "http://127.0.0.1:9")
    return {**env, "STRATUS_WEBHOOKS__ALLOW_PRIVATE_TARGETS": "true"}


def _delivery(committed: UnitOfWork) -> WebhookDelivery | None:
    with committed() as session:
        return session.scalars(select(WebhookDelivery)).one_or_none()


def test_delivery_survives_a_worker_sigkill(
    celery_queue: str,
    committed: UnitOfWork,
    pg_url: str,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STRATUS_WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true")
    monkeypatch.setenv("STRATUS_WORKER__OUTBOX_LEASE_S", str(LEASE_S))
    get_settings.cache_clear()
    held = threading.Event()
    env = _env(pg_url, redis_url)
    first = Worker(celery_queue, env, tmp_path / "worker-1.log")
    second = Worker(celery_queue, env, tmp_path / "worker-2.log")
    with receiver(script=[("hang", held)]) as hook:
        with committed() as session:
            key = make_key(session)
            project = make_project(session, (key, Role.OWNER))
            data = WebhookCreate(url=hook.url, events=["run.*"])
            hook.secret = webhooks.create_webhook(
                session, key.principal, project.id, data, get_settings()
            ).secret
            run = make_run(session, project, status=RunStatus.PENDING)
            runs.transition(session, run.id, RunStatus.PENDING, RunStatus.STOPPED)
        try:
            first.start()
            deadline = time.monotonic() + DEADLINE_S
            while not hook.received and time.monotonic() < deadline:
                relay_outbox()
                time.sleep(0.5)
            assert hook.received, first.log_tail()
            first.kill()  # mid-request: the receiver got the body, the worker never the answer
            held.set()
            delivery = _delivery(committed)
            assert delivery is not None
            assert delivery.status == "pending"
            assert delivery.attempt_count == 0

            second.start()
            while time.monotonic() < deadline:
                relay_outbox()
                delivery = _delivery(committed)
                if delivery is not None and delivery.status == "delivered":
                    break
                time.sleep(0.5)
        finally:
            first.stop()
            second.stop()
    assert delivery is not None
    assert delivery.status == "delivered", second.log_tail()
    assert [r.headers["webhook-id"] for r in hook.received] == [f"msg_{delivery.id.hex}"] * 2
    assert hook.processed == [f"msg_{delivery.id.hex}"]
    assert hook.bad_signatures == 0
