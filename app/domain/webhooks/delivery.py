"""The worker's side of a delivery: what to send (in a short transaction), then what an
attempt's outcome means for the delivery and its endpoint (in another)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app.clock import utcnow
from app.domain.events import repository as events_repo
from app.domain.events.service import record_event
from app.domain.webhooks import repository, signing
from app.domain.webhooks.models import Webhook, WebhookDelivery
from app.domain.webhooks.schemas import DeliveryStatus, WebhookRead, WebhookStatus
from app.domain.webhooks.sender import Outcome, Request
from app.settings import Settings, WebhookSettings

KEEP_ATTEMPTS = 20
D = DeliveryStatus


def message_id(delivery_id: uuid.UUID) -> str:
    """The ``webhook-id``: one per delivery, the same on every retry."""
    return f"msg_{delivery_id.hex}"


def _body(event_type: str, created_at: datetime, data: object) -> bytes:
    payload = {"type": event_type, "timestamp": created_at.isoformat(), "data": data}
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def _signatures(webhook: Webhook, pepper: str, msg_id: str, ts: int, body: bytes) -> str:
    salts = [webhook.secret_salt]
    until = webhook.previous_secret_until
    if webhook.previous_secret_salt and until is not None and until > utcnow():
        salts.append(webhook.previous_secret_salt)
    secrets = [signing.secret_for(pepper, salt) for salt in salts]
    return " ".join(signing.sign(secret, msg_id, ts, body) for secret in secrets)


def prepare(session: Session, delivery_id: uuid.UUID, settings: Settings) -> Request | None:
    """The signed request for a pending delivery; None when there is nothing to send (done,
    gone, or its endpoint disabled, which fails it)."""
    delivery = repository.get_delivery(session, delivery_id)
    if delivery is None or delivery.status != D.PENDING:
        return None
    webhook = repository.get(session, delivery.webhook_id)
    event = events_repo.get(session, delivery.event_id)
    if webhook is None or event is None or webhook.status != WebhookStatus.ACTIVE:
        why = "the endpoint is disabled" if webhook is not None else "the endpoint is gone"
        _settle(session, delivery, D.FAILED, _attempt(Outcome(None, 0.0, error=why)))
        return None
    body = _body(event.type, event.created_at, event.data)
    msg_id = message_id(delivery.id)
    timestamp = int(utcnow().timestamp())
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": _signatures(webhook, settings.key_pepper, msg_id, timestamp, body),
    }
    return Request(webhook.url, headers, body)


def _attempt(outcome: Outcome) -> dict[str, object]:
    return {
        "at": utcnow().isoformat(),
        "status_code": outcome.status_code,
        "latency_ms": outcome.latency_ms,
        "error": outcome.error,
        "response_body": outcome.response_body,
    }


def _settle(
    session: Session,
    delivery: WebhookDelivery,
    status: DeliveryStatus,
    attempt: dict[str, object],
    **values: object,
) -> bool:
    attempts = [*delivery.attempts, attempt][-KEEP_ATTEMPTS:]
    changes = {
        "status": status,
        "attempts": attempts,
        "attempt_count": delivery.attempt_count + 1,
        "updated_at": utcnow(),
        **values,
    }
    return repository.guarded_update(session, WebhookDelivery, delivery.id, D.PENDING, changes)


def _backoff(config: WebhookSettings, attempts: int, retry_after: float | None) -> float:
    delay = min(config.retry_max_s, config.retry_base_s * 2.0 ** min(attempts - 1, 30))
    return max(delay, min(retry_after or 0.0, config.retry_max_s))


def record_attempt(
    session: Session, delivery_id: uuid.UUID, outcome: Outcome, config: WebhookSettings
) -> float | None:
    """Store an attempt; the seconds until the next one, or None when the delivery is settled
    (delivered, given up after the retry window, or refused for good)."""
    delivery = repository.get_delivery(session, delivery_id)
    if delivery is None or delivery.status != D.PENDING:
        return None
    now = utcnow()
    attempt = _attempt(outcome)
    if outcome.ok:
        _settle(session, delivery, D.DELIVERED, attempt, delivered_at=now, next_attempt_at=None)
        _endpoint_answered(session, delivery.webhook_id)
        return None
    _endpoint_failed(session, delivery.webhook_id, config, now)
    wait = _backoff(config, delivery.attempt_count + 1, outcome.retry_after_s)
    window_end = delivery.created_at + timedelta(seconds=config.retry_window_s)
    if outcome.retryable and now + timedelta(seconds=wait) < window_end:
        retry_at = now + timedelta(seconds=wait)
        if _settle(session, delivery, D.PENDING, attempt, next_attempt_at=retry_at):
            return wait
        return None
    _settle(session, delivery, D.FAILED, attempt, next_attempt_at=None)
    return None


def _endpoint_answered(session: Session, webhook_id: uuid.UUID) -> None:
    webhook = repository.get(session, webhook_id)
    if webhook is not None and webhook.failing_since is not None:
        webhook.failing_since = None


def _endpoint_failed(
    session: Session, webhook_id: uuid.UUID, config: WebhookSettings, now: datetime
) -> None:
    """Note the failure; an endpoint failing for longer than the window is disabled."""
    webhook = repository.get(session, webhook_id)
    if webhook is None or webhook.status != WebhookStatus.ACTIVE:
        return
    if webhook.failing_since is None:
        webhook.failing_since = now
        return
    if now - webhook.failing_since < timedelta(seconds=config.disable_after_s):
        return
    reason = (
        f"every delivery failed since {webhook.failing_since.isoformat()}; fix the endpoint "
        "and create the webhook again"
    )
    values = {"status": WebhookStatus.DISABLED, "status_reason": reason, "updated_at": now}
    if repository.guarded_update(session, Webhook, webhook.id, WebhookStatus.ACTIVE, values):
        session.flush()
        session.refresh(webhook)
        read = WebhookRead.model_validate(webhook)
        record_event(session, "webhook.disabled", webhook.project_id, webhook.id, read)
