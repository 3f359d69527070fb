"""Registered models' aliases (``name@alias``), gated by evaluation metrics."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Response

from app.api.deps import PrincipalDep, SessionDep
from app.domain.aliases import service
from app.domain.aliases.schemas import ALIAS, AliasRead, AliasSet
from app.domain.model_versions.schemas import MODEL_NAME
from app.errors import problem_responses

router = APIRouter(tags=["models"])
PATH = "/v1/projects/{project_id}/registered-models/{name}/aliases/{alias}"
Name = Annotated[str, Path(pattern=MODEL_NAME, description="The registered model's name")]
Alias = Annotated[str, Path(pattern=ALIAS, description="The alias, e.g. production")]


@router.put(
    PATH,
    summary="Move an alias",
    responses=problem_responses(401, 403, 404, 409, 422),
)
def set_alias(
    project_id: uuid.UUID,
    name: Name,
    alias: Alias,
    data: AliasSet,
    session: SessionDep,
    principal: PrincipalDep,
) -> AliasRead:
    """Point ``name@alias`` at a version. With ``requires`` (kept on the alias until changed),
    the version's latest completed evaluation must meet every bound, else 409 naming the
    metric, its value and the bound. Deployments that follow the alias roll to the version.
    Every move is audited."""
    return service.set_alias(session, principal, project_id, name, alias, data)


@router.get(PATH, summary="Read an alias", responses=problem_responses(401, 404, 422))
def get_alias(
    project_id: uuid.UUID, name: Name, alias: Alias, session: SessionDep, principal: PrincipalDep
) -> AliasRead:
    """The version ``name@alias`` points at, and the requirements it carries."""
    return service.get_alias(session, principal, project_id, name, alias)


@router.delete(
    PATH,
    status_code=204,
    summary="Remove an alias",
    responses=problem_responses(401, 403, 404, 422),
)
def delete_alias(
    project_id: uuid.UUID, name: Name, alias: Alias, session: SessionDep, principal: PrincipalDep
) -> Response:
    """Remove the alias; deployments that followed it keep serving their version."""
    service.delete_alias(session, principal, project_id, name, alias)
    return Response(status_code=204)
