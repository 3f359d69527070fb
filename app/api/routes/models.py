"""Model versions."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from app.api.deps import PageDep, PrincipalDep, SessionDep, SettingsDep, WriteDep
from app.domain.model_versions import service
from app.domain.model_versions.schemas import MODEL_NAME, ModelVersionCreate, ModelVersionRead
from app.domain.schemas import Page
from app.errors import problem_responses

router = APIRouter(tags=["models"])


@router.post(
    "/v1/projects/{project_id}/models",
    status_code=201,
    response_model=ModelVersionRead,
    responses=problem_responses(401, 403, 404, 409, 422),
)
def register_model(
    project_id: uuid.UUID, data: ModelVersionCreate, write: WriteDep, settings: SettingsDep
) -> JSONResponse:
    """Register an existing artifact as the next version of its name.

    An s3:// artifact lies under the project's ``backend_config.sagemaker.s3_prefixes``; a host
    path (``file://`` or absolute) under STRATUS_BACKENDS__LOCAL__HOST_ROOTS, and exists.
    """
    return write.respond(
        service.register_model(write.session, write.principal, project_id, data, settings)
    )


@router.get("/v1/projects/{project_id}/models", responses=problem_responses(400, 401, 404))
def list_models(
    project_id: uuid.UUID,
    session: SessionDep,
    principal: PrincipalDep,
    page: PageDep,
    name: Annotated[str | None, Query(pattern=MODEL_NAME)] = None,
) -> Page[ModelVersionRead]:
    """The project's model versions, newest first."""
    items, cursor = service.list_model_versions(session, principal, project_id, page, name)
    return Page(items=items, next_cursor=cursor)


@router.get("/v1/models/{model_version_id}", responses=problem_responses(401, 404))
def get_model(
    model_version_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> ModelVersionRead:
    return service.get_model_version(session, principal, model_version_id)
