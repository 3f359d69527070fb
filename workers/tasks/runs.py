"""Run tasks: submit a pending run, stop a stopping one; both are woken by the outbox relay."""

from __future__ import annotations

import logging
import uuid

from app.backends.registry import get_backend, unavailable_reason
from app.db import unit_of_work
from app.domain.outbox import repository as outbox_repository
from app.domain.outbox import service as outbox
from app.domain.runs import repository as runs_repository
from app.domain.runs import service as runs_service
from app.domain.runs.states import RunStatus
from app.settings import get_settings
from workers.celery_app import celery_app

logger = logging.getLogger(__name__)

S = RunStatus
# The states each topic's work applies to; in any other state (gone, finished, superseded)
# the message has nothing left to do and is acknowledged.
ACTS_ON: dict[str, frozenset[RunStatus]] = {
    outbox.RUN_SUBMIT: frozenset({S.PENDING, S.SUBMITTING}),
    outbox.RUN_STOP: frozenset({S.STOPPING}),
}
WAITING: dict[str, str] = {
    outbox.RUN_SUBMIT: "the run stays {status} and will be submitted when one is",
    outbox.RUN_STOP: "the run stays {status} and the stop will be sent when one is",
}


@celery_app.task(name="stratus.runs.submit")
def submit_run(message_id: int) -> None:
    """Submit the run named by an outbox message, or record why it has to wait."""
    _handle(message_id, outbox.RUN_SUBMIT)


@celery_app.task(name="stratus.runs.stop")
def stop_run(message_id: int) -> None:
    """Stop the run named by an outbox message, or record why it has to wait."""
    _handle(message_id, outbox.RUN_STOP)


def _handle(message_id: int, topic: str) -> None:
    worker = get_settings().worker
    with unit_of_work() as session:
        message = outbox_repository.get(session, message_id)
        if message is None or message.processed_at is not None:
            return
        run_id = _run_id(message.payload)
        run = runs_repository.get(session, run_id) if run_id else None
        if run is None or RunStatus(run.status) not in ACTS_ON[topic]:
            outbox.acknowledge(session, message_id)
            return
        backend = get_backend(run.backend)
        if backend is None:
            reason = unavailable_reason(run.backend, WAITING[topic].format(status=run.status))
            runs_service.record_backend_unavailable(session, run.id, reason)
            outbox.defer(
                session, message_id, reason, worker.outbox_retry_base_s, worker.outbox_retry_max_s
            )
            return
    # The backend call belongs here, after the session closed; it lands with the first
    # backend. Raising keeps the message: it is relayed again when its lease runs out.
    raise NotImplementedError(f"{topic} through backend {backend.name!r} is not available yet")


def _run_id(payload: dict[str, object]) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(payload["run_id"]))
    except (KeyError, ValueError):
        logger.error("outbox payload without a valid run_id: %r", payload)
        return None
