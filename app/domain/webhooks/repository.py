"""Every query on webhooks and their deliveries; status changes are guarded updates."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.domain.pagination import PageRequest, paginate
from app.domain.webhooks.models import Webhook, WebhookDelivery


def get(session: Session, webhook_id: uuid.UUID) -> Webhook | None:
    return session.get(Webhook, webhook_id)


def get_delivery(session: Session, delivery_id: uuid.UUID) -> WebhookDelivery | None:
    return session.get(WebhookDelivery, delivery_id)


def active_for_project(session: Session, project_id: uuid.UUID) -> Sequence[Webhook]:
    stmt = select(Webhook).where(Webhook.project_id == project_id, Webhook.status == "active")
    return session.scalars(stmt).all()


def list_for_project(
    session: Session, project_id: uuid.UUID, page: PageRequest
) -> tuple[Sequence[Webhook], str | None]:
    stmt = select(Webhook).where(Webhook.project_id == project_id)
    return paginate(session, stmt, Webhook.id, page)


def list_deliveries(
    session: Session, webhook_id: uuid.UUID, page: PageRequest
) -> tuple[Sequence[WebhookDelivery], str | None]:
    stmt = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
    return paginate(session, stmt, WebhookDelivery.id, page)


def guarded_update(
    session: Session,
    model: type[Webhook] | type[WebhookDelivery],
    row_id: uuid.UUID,
    expected: str,
    values: dict[str, Any],
) -> bool:
    """``UPDATE … WHERE id = :id AND status = :expected``; False when the row moved on."""
    result = session.execute(
        update(model)
        .where(model.id == row_id, model.status == expected)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
