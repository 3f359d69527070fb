"""Deployments: model versions served as endpoints."""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.api.deps import PageDep, PrincipalDep, SessionDep, WriteDep
from app.domain.deployments import service
from app.domain.deployments.schemas import DeploymentCreate, DeploymentRead, DeploymentUpdate
from app.domain.deployments.states import DeploymentStatus
from app.domain.schemas import Page
from app.errors import problem_responses

router = APIRouter(tags=["deployments"])


@router.post(
    "/v1/projects/{project_id}/deployments",
    status_code=201,
    response_model=DeploymentRead,
    responses=problem_responses(401, 403, 404, 409, 422),
)
def create_deployment(
    project_id: uuid.UUID, data: DeploymentCreate, write: WriteDep
) -> JSONResponse:
    """Record a deployment in ``creating``; a worker brings the endpoint up."""
    created = service.create_deployment(write.session, write.principal, project_id, data)
    return write.respond(created)


@router.get("/v1/projects/{project_id}/deployments", responses=problem_responses(400, 401, 404))
def list_deployments(
    project_id: uuid.UUID,
    session: SessionDep,
    principal: PrincipalDep,
    page: PageDep,
    status: DeploymentStatus | None = None,
) -> Page[DeploymentRead]:
    """The project's deployments, newest first."""
    items, cursor = service.list_deployments(session, principal, project_id, page, status)
    return Page(items=items, next_cursor=cursor)


@router.get("/v1/deployments/{deployment_id}", responses=problem_responses(401, 404))
def get_deployment(
    deployment_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> DeploymentRead:
    """One deployment: status, desired and current instances, scaling policy and cost so far."""
    return service.get_deployment(session, principal, deployment_id)


@router.patch(
    "/v1/deployments/{deployment_id}", responses=problem_responses(401, 403, 404, 409, 422)
)
def update_deployment(
    deployment_id: uuid.UUID, data: DeploymentUpdate, session: SessionDep, principal: PrincipalDep
) -> DeploymentRead:
    """Change instance bounds or the scaling policy; a live endpoint is resized by a worker."""
    return service.update_deployment(session, principal, deployment_id, data)


@router.delete(
    "/v1/deployments/{deployment_id}",
    status_code=202,
    responses=problem_responses(401, 403, 404, 409),
)
def delete_deployment(
    deployment_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> DeploymentRead:
    """Ask for the endpoint to be deleted; the deployment goes through ``deleting``."""
    return service.delete_deployment(session, principal, deployment_id)
