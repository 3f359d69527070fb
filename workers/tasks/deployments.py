"""Deployment tasks: create, resize and delete endpoints; woken by the outbox relay."""

from __future__ import annotations

import logging
import uuid

from app.backends.registry import get_backend, unavailable_reason
from app.db import unit_of_work
from app.domain.deployments import repository as deployments_repository
from app.domain.deployments import service as deployments_service
from app.domain.deployments.states import DeploymentStatus
from app.domain.outbox import repository as outbox_repository
from app.domain.outbox import service as outbox
from app.settings import get_settings
from workers.celery_app import celery_app

logger = logging.getLogger(__name__)

S = DeploymentStatus
# The state each topic's work applies to; in any other state (gone, deleted, superseded by
# a delete) the message has nothing left to do and is acknowledged.
ACTS_ON: dict[str, frozenset[DeploymentStatus]] = {
    outbox.DEPLOYMENT_CREATE: frozenset({S.CREATING}),
    outbox.DEPLOYMENT_UPDATE: frozenset({S.UPDATING}),
    outbox.DEPLOYMENT_DELETE: frozenset({S.DELETING}),
}
WAITING: dict[str, str] = {
    outbox.DEPLOYMENT_CREATE: "the deployment stays {status} and will be created when one is",
    outbox.DEPLOYMENT_UPDATE: "the deployment stays {status} and will be resized when one is",
    outbox.DEPLOYMENT_DELETE: "the deployment stays {status} and will be deleted when one is",
}


@celery_app.task(name="stratus.deployments.create")
def create_deployment(message_id: int) -> None:
    """Create the endpoint of the deployment named by an outbox message, or record the wait."""
    _handle(message_id, outbox.DEPLOYMENT_CREATE)


@celery_app.task(name="stratus.deployments.update")
def update_deployment(message_id: int) -> None:
    """Resize the endpoint of the deployment named by an outbox message, or record the wait."""
    _handle(message_id, outbox.DEPLOYMENT_UPDATE)


@celery_app.task(name="stratus.deployments.delete")
def delete_deployment(message_id: int) -> None:
    """Delete the endpoint of the deployment named by an outbox message, or record the wait."""
    _handle(message_id, outbox.DEPLOYMENT_DELETE)


def _handle(message_id: int, topic: str) -> None:
    worker = get_settings().worker
    with unit_of_work() as session:
        message = outbox_repository.get(session, message_id)
        if message is None or message.processed_at is not None:
            return
        deployment_id = _deployment_id(message.payload)
        deployment = deployments_repository.get(session, deployment_id) if deployment_id else None
        if deployment is None or DeploymentStatus(deployment.status) not in ACTS_ON[topic]:
            outbox.acknowledge(session, message_id)
            return
        backend = get_backend(deployment.backend)
        if backend is None:
            waiting = WAITING[topic].format(status=deployment.status)
            reason = unavailable_reason(deployment.backend, waiting)
            deployments_service.record_backend_unavailable(session, deployment.id, reason)
            outbox.defer(
                session, message_id, reason, worker.outbox_retry_base_s, worker.outbox_retry_max_s
            )
            return
    # The backend call belongs here, after the session closed; it lands with the first
    # backend. Raising keeps the message: it is relayed again when its lease runs out.
    raise NotImplementedError(f"{topic} through backend {backend.name!r} is not available yet")


def _deployment_id(payload: dict[str, object]) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(payload["deployment_id"]))
    except (KeyError, ValueError):
        logger.error("outbox payload without a valid deployment_id: %r", payload)
        return None
