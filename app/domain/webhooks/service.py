"""Webhooks: create (secret shown once), list, read, delete, rotate the secret, see and
redeliver deliveries."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy.orm import Session

from app.clock import utcnow
from app.domain.access import Principal, Role, authorize
from app.domain.audit import service as audit
from app.domain.outbox import service as outbox
from app.domain.pagination import PageRequest
from app.domain.webhooks import repository, signing
from app.domain.webhooks.models import Webhook, WebhookDelivery
from app.domain.webhooks.schemas import (
    DeliveryRead,
    DeliveryStatus,
    WebhookCreate,
    WebhookCreated,
    WebhookRead,
    WebhookStatus,
)
from app.domain.webhooks.targets import TargetRefused, TargetUnresolved, check_target
from app.errors import NotFound, Unprocessable
from app.settings import Settings


def _load(
    session: Session,
    principal: Principal,
    project_id: uuid.UUID,
    webhook_id: uuid.UUID,
    need: Role,
) -> Webhook:
    missing = NotFound(f"Webhook {webhook_id} not found.")
    authorize(session, principal, project_id, need, missing=missing)
    webhook = repository.get(session, webhook_id)
    if webhook is None or webhook.project_id != project_id:
        raise missing
    return webhook


def _created(webhook: Webhook, settings: Settings) -> WebhookCreated:
    secret = signing.secret_for(settings.key_pepper, webhook.secret_salt)
    return WebhookCreated.model_validate({**_read(webhook).model_dump(), "secret": secret})


def _read(webhook: Webhook) -> WebhookRead:
    return WebhookRead.model_validate(webhook)


def create_webhook(
    session: Session,
    principal: Principal,
    project_id: uuid.UUID,
    data: WebhookCreate,
    settings: Settings,
) -> WebhookCreated:
    """Subscribe a URL to the project's events; the signing secret is returned only here."""
    authorize(session, principal, project_id, Role.EDITOR)
    try:
        check_target(data.url, settings.webhooks.allow_private_targets)
    except TargetUnresolved:
        pass  # may be created later; every attempt checks again
    except TargetRefused as exc:
        raise Unprocessable(f"url: {exc}.", code="webhook_target_refused") from None
    webhook = Webhook(
        project_id=project_id,
        url=data.url,
        events=list(data.events),
        description=data.description,
        status=WebhookStatus.ACTIVE,
        secret_salt=signing.new_salt(),
        created_by=principal.id,
    )
    session.add(webhook)
    session.flush()
    audit.record(
        session, principal, "webhook.create", "webhook", webhook.id, project_id, {"url": data.url}
    )
    return _created(webhook, settings)


def list_webhooks(
    session: Session, principal: Principal, project_id: uuid.UUID, page: PageRequest
) -> tuple[list[WebhookRead], str | None]:
    authorize(session, principal, project_id, Role.VIEWER)
    rows, cursor = repository.list_for_project(session, project_id, page)
    return [_read(r) for r in rows], cursor


def get_webhook(
    session: Session, principal: Principal, project_id: uuid.UUID, webhook_id: uuid.UUID
) -> WebhookRead:
    return _read(_load(session, principal, project_id, webhook_id, Role.VIEWER))


def delete_webhook(
    session: Session, principal: Principal, project_id: uuid.UUID, webhook_id: uuid.UUID
) -> None:
    """Remove the endpoint; its pending deliveries are dropped with it."""
    webhook = _load(session, principal, project_id, webhook_id, Role.EDITOR)
    session.delete(webhook)
    audit.record(session, principal, "webhook.delete", "webhook", webhook_id, project_id)


def rotate_secret(
    session: Session,
    principal: Principal,
    project_id: uuid.UUID,
    webhook_id: uuid.UUID,
    settings: Settings,
) -> WebhookCreated:
    """A new secret; the old one keeps signing alongside it for the grace period."""
    webhook = _load(session, principal, project_id, webhook_id, Role.EDITOR)
    webhook.previous_secret_salt = webhook.secret_salt
    webhook.previous_secret_until = utcnow() + timedelta(seconds=settings.webhooks.secret_grace_s)
    webhook.secret_salt = signing.new_salt()
    session.flush()
    audit.record(session, principal, "webhook.rotate_secret", "webhook", webhook.id, project_id)
    return _created(webhook, settings)


def list_deliveries(
    session: Session,
    principal: Principal,
    project_id: uuid.UUID,
    webhook_id: uuid.UUID,
    page: PageRequest,
) -> tuple[list[DeliveryRead], str | None]:
    """The endpoint's deliveries, newest first, each with its attempts."""
    _load(session, principal, project_id, webhook_id, Role.VIEWER)
    rows, cursor = repository.list_deliveries(session, webhook_id, page)
    return [DeliveryRead.model_validate(r) for r in rows], cursor


def redeliver(
    session: Session,
    principal: Principal,
    project_id: uuid.UUID,
    webhook_id: uuid.UUID,
    delivery_id: uuid.UUID,
) -> DeliveryRead:
    """Send a delivery again (same ``webhook-id``, so a deduping receiver sees it once)."""
    _load(session, principal, project_id, webhook_id, Role.EDITOR)
    delivery = repository.get_delivery(session, delivery_id)
    if delivery is None or delivery.webhook_id != webhook_id:
        raise NotFound(f"Delivery {delivery_id} not found.")
    if delivery.status != DeliveryStatus.PENDING:
        values = {"status": DeliveryStatus.PENDING, "next_attempt_at": utcnow()}
        if repository.guarded_update(
            session, WebhookDelivery, delivery.id, delivery.status, values
        ):
            outbox.enqueue(session, outbox.WEBHOOK_DELIVER, delivery_id=str(delivery.id))
    audit.record(session, principal, "webhook.redeliver", "webhook", webhook_id, project_id)
    session.refresh(delivery)
    return DeliveryRead.model_validate(delivery)
