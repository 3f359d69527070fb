"""Projects and their members."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from app.api.deps import PageDep, PrincipalDep, SessionDep, SettingsDep, WriteDep
from app.domain.access import Role, authorize
from app.domain.audit import service as audit
from app.domain.audit.schemas import AuditEventRead
from app.domain.costs import service as costs
from app.domain.projects import service
from app.domain.projects.schemas import (
    MemberPut,
    MemberRead,
    ProjectCreate,
    ProjectRead,
    ProjectUpdate,
)
from app.domain.schemas import Page
from app.errors import problem_responses

router = APIRouter(prefix="/v1/projects", tags=["projects"])


@router.post(
    "",
    status_code=201,
    response_model=ProjectRead,
    responses=problem_responses(401, 409, 422),
)
def create_project(data: ProjectCreate, write: WriteDep, settings: SettingsDep) -> JSONResponse:
    """Create a project; the calling key becomes its owner.

    ``backend_config.sagemaker.role_arn`` must be one the admin allows (else 422).
    """
    return write.respond(service.create_project(write.session, write.principal, data, settings))


@router.get("", response_model=Page[ProjectRead], responses=problem_responses(400, 401))
def list_projects(session: SessionDep, principal: PrincipalDep, page: PageDep) -> Page[ProjectRead]:
    """The projects the key is a member of (all of them for an admin), newest first."""
    items, cursor = service.list_projects(session, principal, page)
    return Page(items=items, next_cursor=cursor)


@router.get("/{project_id}", responses=problem_responses(401, 404))
def get_project(project_id: uuid.UUID, session: SessionDep, principal: PrincipalDep) -> ProjectRead:
    """One project: name, default backend, budget and backend settings."""
    return service.get_project(session, principal, project_id)


@router.patch("/{project_id}", responses=problem_responses(401, 403, 404, 422))
def update_project(
    project_id: uuid.UUID,
    data: ProjectUpdate,
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
) -> ProjectRead:
    """Change a project (owners). ``backend_config`` replaces the project's backend settings:
    its SageMaker role (one the admin allows, else 422) and the S3 prefixes its runs and
    models may use."""
    return service.update_project(session, principal, project_id, data, settings)


@router.delete("/{project_id}", status_code=204, responses=problem_responses(401, 403, 404, 409))
def delete_project(project_id: uuid.UUID, session: SessionDep, principal: PrincipalDep) -> Response:
    """Delete the project and everything in it (owners); refused while work is still live."""
    service.delete_project(session, principal, project_id)
    return Response(status_code=204)


@router.get("/{project_id}/members", responses=problem_responses(400, 401, 404))
def list_members(
    project_id: uuid.UUID, session: SessionDep, principal: PrincipalDep, page: PageDep
) -> Page[MemberRead]:
    """The project's members and their roles."""
    items, cursor = service.list_members(session, principal, project_id, page)
    return Page(items=items, next_cursor=cursor)


@router.get("/{project_id}/members/{principal_id}", responses=problem_responses(401, 404))
def get_member(
    project_id: uuid.UUID, principal_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> MemberRead:
    """One member's role in the project."""
    return service.get_member(session, principal, project_id, principal_id)


@router.put(
    "/{project_id}/members/{principal_id}", responses=problem_responses(401, 403, 404, 409, 422)
)
def put_member(
    project_id: uuid.UUID,
    principal_id: uuid.UUID,
    data: MemberPut,
    session: SessionDep,
    principal: PrincipalDep,
) -> MemberRead:
    """Grant a principal (an API key id) a role on the project, or change it."""
    return service.put_member(session, principal, project_id, principal_id, data)


@router.delete(
    "/{project_id}/members/{principal_id}",
    status_code=204,
    responses=problem_responses(401, 403, 404, 409),
)
def remove_member(
    project_id: uuid.UUID, principal_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> Response:
    """Remove a member (owners); the last owner cannot be removed."""
    service.remove_member(session, principal, project_id, principal_id)
    return Response(status_code=204)


@router.get("/{project_id}/audit-events", responses=problem_responses(400, 401, 403, 404))
def list_audit_events(
    project_id: uuid.UUID, session: SessionDep, principal: PrincipalDep, page: PageDep
) -> Page[AuditEventRead]:
    """Every mutation in the project, newest first (owners)."""
    authorize(session, principal, project_id, Role.OWNER)
    items, cursor = audit.list_events(session, project_id, page)
    return Page(items=items, next_cursor=cursor)


@router.get("/{project_id}/costs", responses=problem_responses(401, 404))
def project_costs(
    project_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> costs.CostSummary:
    """Spend so far on training and serving, per instance type, against the budget."""
    return costs.project_costs(session, principal, project_id)
