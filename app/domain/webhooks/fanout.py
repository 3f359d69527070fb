"""An event's deliveries: one row and one outbox message per subscribed active endpoint."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from app.clock import utcnow
from app.domain.events.schemas import matches
from app.domain.outbox import service as outbox
from app.domain.webhooks import repository
from app.domain.webhooks.models import WebhookDelivery
from app.domain.webhooks.schemas import DeliveryStatus
from app.ids import uuid7


def queue_deliveries(
    session: Session, event_id: int, event_type: str, project_id: uuid.UUID
) -> int:
    """Queue the event for every active endpoint of the project subscribed to its type."""
    queued = 0
    for webhook in repository.active_for_project(session, project_id):
        if not any(matches(pattern, event_type) for pattern in webhook.events):
            continue
        delivery = WebhookDelivery(
            id=uuid7(),  # known before the insert: no flush per delivery
            webhook_id=webhook.id,
            project_id=project_id,
            event_id=event_id,
            event_type=event_type,
            status=DeliveryStatus.PENDING,
            attempt_count=0,
            attempts=[],
            next_attempt_at=utcnow(),
        )
        session.add(delivery)
        outbox.enqueue(session, outbox.WEBHOOK_DELIVER, delivery_id=str(delivery.id))
        queued += 1
    return queued
