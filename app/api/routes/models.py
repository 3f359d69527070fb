"""Model versions."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, StreamingResponse

from app.api.deps import PageDep, PrincipalDep, SessionDep, SettingsDep, WriteDep
from app.domain.model_versions import artifacts, service
from app.domain.model_versions.schemas import (
    MODEL_NAME_OR_REF,
    ModelVersionCreate,
    ModelVersionRead,
)
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
    name: Annotated[
        str | None,
        Query(
            pattern=MODEL_NAME_OR_REF,
            description="Only versions of this model; name@alias: the version it points at",
        ),
    ] = None,
    sort: Annotated[
        str | None,
        Query(
            pattern=r"^-?[A-Za-z0-9_.\-/:]{1,128}$",
            description="With name: order by this metric of each version's latest completed "
            "evaluation (-metric: highest first); versions without it come last",
        ),
    ] = None,
) -> Page[ModelVersionRead]:
    """The project's model versions, newest first."""
    items, cursor = service.list_model_versions(session, principal, project_id, page, name, sort)
    return Page(items=items, next_cursor=cursor)


@router.get("/v1/models/{model_version_id}", responses=problem_responses(401, 404))
def get_model(
    model_version_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> ModelVersionRead:
    """One model version: its artifact, framework, metrics and the run it came from."""
    return service.get_model_version(session, principal, model_version_id)


ARTIFACT_CONTENT: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The artifact's bytes",
        "content": {artifacts.GZIP: {}, artifacts.OCTETS: {}},
    }
}


@router.get(
    "/v1/models/{model_version_id}/artifact",
    response_class=StreamingResponse,
    responses={**ARTIFACT_CONTENT, **problem_responses(401, 404, 409, 502, 503)},
)
def download_artifact(
    model_version_id: uuid.UUID, session: SessionDep, principal: PrincipalDep, settings: SettingsDep
) -> StreamingResponse:
    """Stream the model version's artifact (from a run's job directory, the store, or S3)."""
    download = artifacts.open_artifact(session, principal, model_version_id, settings)
    headers = {"Content-Disposition": f'attachment; filename="{download.filename}"'}
    if download.stream.size is not None:
        headers["Content-Length"] = str(download.stream.size)
    return StreamingResponse(
        download.stream.chunks(), media_type=download.media_type, headers=headers
    )
