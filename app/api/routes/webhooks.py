"""Webhooks: endpoints that receive a project's events, signed (Standard Webhooks)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from app.api.deps import PageDep, PrincipalDep, SessionDep, SettingsDep, WriteDep
from app.domain.schemas import Page
from app.domain.webhooks import service
from app.domain.webhooks.schemas import DeliveryRead, WebhookCreate, WebhookCreated, WebhookRead
from app.errors import problem_responses

router = APIRouter(tags=["webhooks"])
BASE = "/v1/projects/{project_id}/webhooks"


@router.post(
    BASE,
    status_code=201,
    response_model=WebhookCreated,
    summary="Create a webhook",
    responses=problem_responses(401, 403, 404, 409, 422),
)
def create_webhook(
    project_id: uuid.UUID, data: WebhookCreate, write: WriteDep, settings: SettingsDep
) -> JSONResponse:
    """Subscribe an http(s) URL to event types. The response carries the signing `secret`
    once. Each delivery is a POST of `{"type", "timestamp", "data"}` with headers
    `webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of
    "{id}.{timestamp}.{body}">` keyed with the base64 part of the secret. URLs resolving to
    private, loopback or link-local addresses are refused (422) unless
    STRATUS_WEBHOOKS__ALLOW_PRIVATE_TARGETS is set."""
    created = service.create_webhook(write.session, write.principal, project_id, data, settings)
    return write.respond(created, replay=WebhookRead.model_validate(created.model_dump()))


@router.get(
    BASE,
    response_model=Page[WebhookRead],
    summary="List webhooks",
    responses=problem_responses(400, 401, 404),
)
def list_webhooks(
    project_id: uuid.UUID, session: SessionDep, principal: PrincipalDep, page: PageDep
) -> Page[WebhookRead]:
    """The project's webhooks, newest first (secrets are never shown again)."""
    items, cursor = service.list_webhooks(session, principal, project_id, page)
    return Page(items=items, next_cursor=cursor)


@router.get(BASE + "/{webhook_id}", summary="Get a webhook", responses=problem_responses(401, 404))
def get_webhook(
    project_id: uuid.UUID, webhook_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> WebhookRead:
    """One webhook: its URL, subscriptions and whether it is active or disabled."""
    return service.get_webhook(session, principal, project_id, webhook_id)


@router.delete(
    BASE + "/{webhook_id}",
    status_code=204,
    summary="Delete a webhook",
    responses=problem_responses(401, 403, 404),
)
def delete_webhook(
    project_id: uuid.UUID, webhook_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> Response:
    """Stop sending to the endpoint; its pending deliveries are dropped."""
    service.delete_webhook(session, principal, project_id, webhook_id)
    return Response(status_code=204)


@router.post(
    BASE + "/{webhook_id}/rotate-secret",
    response_model=WebhookCreated,
    summary="Rotate a webhook's secret",
    responses=problem_responses(401, 403, 404),
)
def rotate_secret(
    project_id: uuid.UUID,
    webhook_id: uuid.UUID,
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
) -> WebhookCreated:
    """A new signing secret, shown once. For STRATUS_WEBHOOKS__SECRET_GRACE_S deliveries
    carry two signatures (new and old), so receivers can switch without losing any."""
    return service.rotate_secret(session, principal, project_id, webhook_id, settings)


@router.get(
    BASE + "/{webhook_id}/deliveries",
    response_model=Page[DeliveryRead],
    summary="List a webhook's deliveries",
    responses=problem_responses(400, 401, 404),
)
def list_deliveries(
    project_id: uuid.UUID,
    webhook_id: uuid.UUID,
    session: SessionDep,
    principal: PrincipalDep,
    page: PageDep,
) -> Page[DeliveryRead]:
    """Deliveries newest first, each with its attempts: status code or error, latency and
    the first 1 KB of the answer."""
    items, cursor = service.list_deliveries(session, principal, project_id, webhook_id, page)
    return Page(items=items, next_cursor=cursor)


@router.post(
    BASE + "/{webhook_id}/deliveries/{delivery_id}/redeliver",
    status_code=202,
    response_model=DeliveryRead,
    summary="Redeliver an event",
    responses=problem_responses(401, 403, 404),
)
def redeliver(
    project_id: uuid.UUID,
    webhook_id: uuid.UUID,
    delivery_id: uuid.UUID,
    session: SessionDep,
    principal: PrincipalDep,
) -> DeliveryRead:
    """Send a delivered or failed delivery again, with the same `webhook-id`; a pending one
    is left to its next attempt."""
    return service.redeliver(session, principal, project_id, webhook_id, delivery_id)
