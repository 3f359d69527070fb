"""Code bundles: upload a gzip'd tar of training code, list and read them."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session, sessionmaker

from app.api.deps import FactoryDep, PageDep, PrincipalDep, SessionDep, SettingsDep
from app.api.uploads import spooled_body
from app.db import unit_of_work
from app.domain.access import Principal
from app.domain.bundles import service
from app.domain.bundles.schemas import GZIP_MEDIA_TYPES, BundleRead, Upload
from app.domain.schemas import Page
from app.errors import UnsupportedMediaType, problem_responses
from app.settings import Settings

router = APIRouter(tags=["code bundles"])

# The upload route's path, for the body-size middleware's per-route limit.
UPLOAD_PATH = r"/v1/projects/[^/]+/code-bundles"
UPLOAD_BODY = {
    "required": True,
    "description": "A gzip'd tar of the code, e.g. `tar czf - -C src .`",
    "content": {mt: {"schema": {"type": "string", "format": "binary"}} for mt in GZIP_MEDIA_TYPES},
}


def _authorize(factory: sessionmaker[Session], principal: Principal, project_id: uuid.UUID) -> None:
    with unit_of_work(factory) as session:
        service.authorize_upload(session, principal, project_id)


def _create(
    factory: sessionmaker[Session],
    principal: Principal,
    project_id: uuid.UUID,
    upload: Upload,
    settings: Settings,
) -> BundleRead:
    stored = service.store_bundle(upload, settings)  # no transaction open meanwhile
    with unit_of_work(factory) as session:
        return service.record_bundle(session, principal, project_id, stored)


@router.post(
    "/v1/projects/{project_id}/code-bundles",
    status_code=201,
    response_model=BundleRead,
    responses=problem_responses(400, 401, 403, 404, 413, 415, 422, 503),
    openapi_extra={"requestBody": UPLOAD_BODY},
)
async def upload_bundle(
    project_id: uuid.UUID,
    request: Request,
    principal: PrincipalDep,
    factory: FactoryDep,
    settings: SettingsDep,
    content_type: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> JSONResponse:
    """Upload code as a gzip'd tar; the same bytes in the same project give the same bundle."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type not in GZIP_MEDIA_TYPES:
        raise UnsupportedMediaType(
            f"Send the bundle as Content-Type: application/gzip, not {media_type or 'none'!r}."
        )
    await run_in_threadpool(_authorize, factory, principal, project_id)
    async with spooled_body(request, settings.artifacts.bundle_max_bytes) as upload:
        bundle = await run_in_threadpool(_create, factory, principal, project_id, upload, settings)
    return JSONResponse(jsonable_encoder(bundle), status_code=201)


@router.get("/v1/projects/{project_id}/code-bundles", responses=problem_responses(400, 401, 404))
def list_bundles(
    project_id: uuid.UUID, session: SessionDep, principal: PrincipalDep, page: PageDep
) -> Page[BundleRead]:
    """The project's code bundles, newest first."""
    items, cursor = service.list_bundles(session, principal, project_id, page)
    return Page(items=items, next_cursor=cursor)


@router.get("/v1/code-bundles/{bundle_id}", responses=problem_responses(401, 404))
def get_bundle(bundle_id: uuid.UUID, session: SessionDep, principal: PrincipalDep) -> BundleRead:
    """One code bundle: its digest, size and file count."""
    return service.get_bundle(session, principal, bundle_id)
