"""API keys (admins)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from app.api.deps import PageDep, PrincipalDep, SessionDep, SettingsDep, WriteDep
from app.domain.api_keys import service
from app.domain.api_keys.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyRead
from app.domain.audit import service as audit
from app.domain.audit.schemas import AuditEventRead
from app.domain.schemas import Page
from app.errors import Forbidden, problem_responses

router = APIRouter(tags=["api-keys"])


@router.post(
    "/v1/api-keys",
    status_code=201,
    response_model=ApiKeyCreated,
    responses=problem_responses(401, 403, 409, 422),
)
def create_api_key(data: ApiKeyCreate, write: WriteDep, settings: SettingsDep) -> JSONResponse:
    """Issue a key. The response carries its ``secret`` once; only a hash is stored."""
    created = service.create_key(write.session, write.principal, data, settings.key_pepper)
    return write.respond(created, replay=created.without_secret())


@router.get("/v1/api-keys", responses=problem_responses(400, 401, 403))
def list_api_keys(session: SessionDep, principal: PrincipalDep, page: PageDep) -> Page[ApiKeyRead]:
    """Every API key (admins only), newest first; secrets are never shown again."""
    items, cursor = service.list_keys(session, principal, page)
    return Page(items=items, next_cursor=cursor)


@router.delete(
    "/v1/api-keys/{key_id}", status_code=204, responses=problem_responses(401, 403, 404, 409)
)
def revoke_api_key(key_id: uuid.UUID, session: SessionDep, principal: PrincipalDep) -> Response:
    """Revoke a key; it stops working at once."""
    service.revoke_key(session, principal, key_id)
    return Response(status_code=204)


@router.get("/v1/audit-events", responses=problem_responses(400, 401, 403))
def list_global_audit_events(
    session: SessionDep, principal: PrincipalDep, page: PageDep
) -> Page[AuditEventRead]:
    """Key-management events, which belong to no project (admins)."""
    if not principal.is_admin:
        raise Forbidden("Only admin keys read the global audit trail.")
    items, cursor = audit.list_events(session, None, page)
    return Page(items=items, next_cursor=cursor)
