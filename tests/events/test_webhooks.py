"""Signed webhooks against a real receiver on the loopback: signatures, retries after 500s,
a timeout and a 429, giving up, disabling a failing endpoint, and the SSRF guard."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from app.clock import utcnow
from app.domain.access import Role
from app.domain.events.models import Event
from app.domain.outbox.models import OutboxMessage
from app.domain.runs import service as runs
from app.domain.runs.states import RunStatus
from app.domain.webhooks import service as webhooks
from app.domain.webhooks.models import Webhook, WebhookDelivery
from app.domain.webhooks.schemas import WebhookCreate
from app.main import create_app
from app.settings import Settings, get_settings
from tests.events.receiver import receiver
from tests.factories import Key, make_key, make_project, make_run
from tests.workers.conftest import UnitOfWork
from workers.tasks.webhooks import deliver_webhook

TIMEOUT_S = 0.5


@pytest.fixture
def webhook_env(app_on_pg: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("STRATUS_WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true")
    monkeypatch.setenv("STRATUS_WEBHOOKS__TIMEOUT_S", str(TIMEOUT_S))
    monkeypatch.setenv("STRATUS_WEBHOOKS__RETRY_BASE_S", "10")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _subscribe(committed: UnitOfWork, url: str, events: list[str]) -> tuple[Key, Any, str]:
    with committed() as session:
        key = make_key(session)
        project = make_project(session, (key, Role.OWNER))
        data = WebhookCreate(url=url, events=events)
        created = webhooks.create_webhook(session, key.principal, project.id, data, get_settings())
    return key, project, created.secret


def _stop_a_run(committed: UnitOfWork, project: Any) -> uuid.UUID:
    with committed() as session:
        run = make_run(session, project, status=RunStatus.PENDING)
        runs.transition(session, run.id, RunStatus.PENDING, RunStatus.STOPPED)
        return run.id


def _message(session: Session) -> OutboxMessage:
    stmt = select(OutboxMessage).where(OutboxMessage.topic == "webhook.deliver")
    return session.scalars(stmt).one()


def _delivery(session: Session) -> WebhookDelivery:
    return session.scalars(select(WebhookDelivery)).one()


def _attempt_now(committed: UnitOfWork) -> None:
    """Make the delivery's message due (as the relay would once it waited) and run the task."""
    with committed() as session:
        message = _message(session)
        message.available_at = utcnow()
        message_id = message.id
    deliver_webhook(message_id)


def test_retries_after_500s_and_a_timeout_then_delivers_once_signed(
    webhook_env: None, committed: UnitOfWork
) -> None:
    with receiver(script=[500, 503, ("sleep", TIMEOUT_S * 3)]) as hook:
        key, project, secret = _subscribe(committed, hook.url, ["run.*"])
        hook.secret = secret
        run_id = _stop_a_run(committed, project)
        waits = []
        for _ in range(4):
            before = utcnow()
            _attempt_now(committed)
            with committed() as session:
                message = _message(session)
                waits.append((message.available_at - before).total_seconds())
                delivery = _delivery(session)
        assert delivery.status == "delivered"
        assert [a["status_code"] for a in delivery.attempts] == [500, 503, None, 200]
        assert "timed out" in delivery.attempts[2]["error"]
        # Exponential backoff from 10 s between the failed attempts.
        assert 9 < waits[0] < 11
        assert 19 < waits[1] < 21
        assert 39 < waits[2] < 41
        with committed() as session:
            assert _message(session).processed_at is not None

    assert len(hook.received) == 4
    ids = {r.headers["webhook-id"] for r in hook.received}
    assert ids == {f"msg_{delivery.id.hex}"}  # one id for every retry
    assert hook.processed == [f"msg_{delivery.id.hex}"]
    assert hook.bad_signatures == 0
    final = hook.received[-1]
    assert final.headers["webhook-signature"].startswith("v1,")
    assert abs(int(final.headers["webhook-timestamp"]) - utcnow().timestamp()) < 60
    assert final.payload["type"] == "run.stopped"
    assert set(final.payload) == {"type", "timestamp", "data"}
    assert final.payload["data"]["id"] == str(run_id)
    assert final.payload["data"]["status"] == "stopped"


def test_retry_after_is_honoured(webhook_env: None, committed: UnitOfWork) -> None:
    with receiver(script=[(429, {"Retry-After": "600"})]) as hook:
        _, project, hook.secret = _subscribe(committed, hook.url, ["*"])
        _stop_a_run(committed, project)
        before = utcnow()
        _attempt_now(committed)
        with committed() as session:
            wait = (_message(session).available_at - before).total_seconds()
            assert _delivery(session).status == "pending"
    assert 590 < wait < 610  # the endpoint's 600 s, not the 10 s backoff


def test_a_client_error_is_final_and_unsubscribed_types_are_not_sent(
    webhook_env: None, committed: UnitOfWork
) -> None:
    with receiver(script=[410]) as hook:
        _, project, hook.secret = _subscribe(committed, hook.url, ["run.stopped"])
        with committed() as session:
            run = make_run(session, project, status=RunStatus.PENDING)
            runs.transition(session, run.id, RunStatus.PENDING, RunStatus.SUBMITTING)
        with committed() as session:
            assert session.scalars(select(WebhookDelivery)).all() == []  # run.submitted
        _stop_a_run(committed, project)
        _attempt_now(committed)
        with committed() as session:
            delivery = _delivery(session)
            assert delivery.status == "failed"
            assert delivery.attempts[-1]["status_code"] == 410
            assert _message(session).processed_at is not None


def test_gives_up_after_the_window_and_disables_a_failing_endpoint(
    webhook_env: None, committed: UnitOfWork, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRATUS_WEBHOOKS__RETRY_WINDOW_S", "3600")
    monkeypatch.setenv("STRATUS_WEBHOOKS__DISABLE_AFTER_S", "3600")
    get_settings.cache_clear()
    with receiver(script=[500, 500, 500]) as hook:
        _, project, hook.secret = _subscribe(committed, hook.url, ["run.*"])
        _stop_a_run(committed, project)
        _attempt_now(committed)
        # An hour of failures later: the delivery gives up, the endpoint is disabled.
        with committed() as session:
            hour_ago = utcnow() - timedelta(hours=1, seconds=1)
            session.execute(update(WebhookDelivery).values(created_at=hour_ago))
            session.execute(update(Webhook).values(failing_since=hour_ago))
        _attempt_now(committed)
        with committed() as session:
            delivery = _delivery(session)
            webhook = session.scalars(select(Webhook)).one()
            types = list(session.scalars(select(Event.type).order_by(Event.id)))
            assert delivery.status == "failed"
            assert delivery.attempt_count == 2
            assert webhook.status == "disabled"
            assert "failed since" in (webhook.status_reason or "")
            assert types == ["run.stopped", "webhook.disabled"]
        # A disabled endpoint gets nothing more.
        _stop_a_run(committed, project)
        with committed() as session:
            assert len(session.scalars(select(WebhookDelivery)).all()) == 1
    assert len(hook.received) == 2


def test_redeliver_sends_again_with_the_same_id(webhook_env: None, committed: UnitOfWork) -> None:
    with receiver() as hook:
        key, project, hook.secret = _subscribe(committed, hook.url, ["run.*"])
        _stop_a_run(committed, project)
        _attempt_now(committed)
        with committed() as session:
            delivery = _delivery(session)
            webhook_id = delivery.webhook_id
            read = webhooks.redeliver(session, key.principal, project.id, webhook_id, delivery.id)
            assert read.status == "pending"
        with committed() as session:
            pending = session.scalars(
                select(OutboxMessage).where(OutboxMessage.processed_at.is_(None))
            ).one()
        deliver_webhook(pending.id)
    assert [r.headers["webhook-id"] for r in hook.received] == [f"msg_{delivery.id.hex}"] * 2
    assert len(hook.processed) == 1


def test_rotation_signs_with_both_secrets_for_the_grace_period(
    webhook_env: None, committed: UnitOfWork
) -> None:
    with receiver() as hook:
        key, project, old = _subscribe(committed, hook.url, ["run.*"])
        with committed() as session:
            webhook_id = session.scalars(select(Webhook.id)).one()
            new = webhooks.rotate_secret(
                session, key.principal, project.id, webhook_id, get_settings()
            ).secret
        assert new != old
        assert new.startswith("whsec_")
        hook.secret = old  # a receiver that has not switched yet still verifies
        _stop_a_run(committed, project)
        _attempt_now(committed)
    assert len(hook.received[0].headers["webhook-signature"].split()) == 2
    assert hook.bad_signatures == 0
    assert len(hook.processed) == 1


# --- the API ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/hook",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
    ],
)
def test_private_targets_are_refused(client: TestClient, db: Session, owner: Any, url: str) -> None:
    key, project = owner
    body = {"url": url, "events": ["run.*"]}
    r = client.post(f"/v1/projects/{project.id}/webhooks", json=body, headers=key.headers)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "webhook_target_refused"
    assert "ALLOW_PRIVATE_TARGETS" in r.json()["detail"]
    assert db.scalars(select(Webhook)).all() == []


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"url": "ftp://example.com/x", "events": ["run.*"]}, "http"),
        ({"url": "https://u:p@example.com/x", "events": ["run.*"]}, "credentials"),
        ({"url": "https://example.com/x", "events": []}, "events"),
        ({"url": "https://example.com/x", "events": ["runs.*"]}, "no event type"),
        ({"url": "https://example.com/x", "events": ["RUN.*"]}, "events"),
        ({"url": "https://example.com/x", "events": ["run.*"], "secret": "x"}, "secret"),
    ],
)
def test_bad_webhooks_are_refused(
    client: TestClient, owner: Any, body: dict[str, Any], fragment: str
) -> None:
    key, project = owner
    r = client.post(f"/v1/projects/{project.id}/webhooks", json=body, headers=key.headers)
    assert r.status_code == 422, r.text
    assert fragment in r.text


def test_webhook_api_shows_the_secret_once(
    settings: Settings, session_factory: sessionmaker[Session], db: Session
) -> None:
    allow = settings.webhooks.model_copy(update={"allow_private_targets": True})
    settings = settings.model_copy(update={"webhooks": allow})
    key, viewer = make_key(db), make_key(db)
    project = make_project(db, (key, Role.OWNER), (viewer, Role.VIEWER))
    db.commit()
    base = f"/v1/projects/{project.id}/webhooks"
    body = {"url": "http://127.0.0.1:9/hook", "events": ["run.*", "deployment.failed"]}
    with TestClient(create_app(settings, session_factory)) as client:
        r = client.post(base, json=body, headers={**key.headers, "Idempotency-Key": "k1"})
        assert r.status_code == 201, r.text
        created = r.json()
        assert created["secret"].startswith("whsec_")
        assert created["status"] == "active"
        replay = client.post(base, json=body, headers={**key.headers, "Idempotency-Key": "k1"})
        assert replay.status_code == 201
        assert "secret" not in replay.json()
        listed = client.get(base, headers=viewer.headers).json()["items"]
        assert [w["id"] for w in listed] == [created["id"]]
        assert "secret" not in listed[0]
        one = client.get(f"{base}/{created['id']}", headers=viewer.headers).json()
        assert one["events"] == ["deployment.failed", "run.*"]
        assert client.post(base, json=body, headers=viewer.headers).status_code == 403
        rotated = client.post(f"{base}/{created['id']}/rotate-secret", headers=key.headers)
        assert rotated.status_code == 200
        assert rotated.json()["secret"] != created["secret"]
        deliveries = client.get(f"{base}/{created['id']}/deliveries", headers=key.headers)
        assert deliveries.json() == {"items": [], "next_cursor": None}
        assert client.delete(f"{base}/{created['id']}", headers=key.headers).status_code == 204
        assert client.get(f"{base}/{created['id']}", headers=key.headers).status_code == 404
