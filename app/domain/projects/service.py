"""Projects and memberships: create, read, update, delete; roles per principal."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.backends.registry import configuration_problem
from app.domain.access import Principal, Role, authorize
from app.domain.api_keys import repository as keys_repo
from app.domain.audit import service as audit
from app.domain.deployments import repository as deployments_repo
from app.domain.metrics import service as metrics
from app.domain.pagination import PageRequest
from app.domain.projects import repository
from app.domain.projects.models import Membership, Project
from app.domain.projects.schemas import (
    CLOUD_BACKENDS,
    BackendConfig,
    MemberPut,
    MemberRead,
    ProjectCreate,
    ProjectRead,
    ProjectUpdate,
)
from app.domain.runs import repository as runs_repo
from app.errors import Conflict, NotFound, Unprocessable
from app.settings import Settings


def _stored_backend_config(config: BackendConfig, settings: Settings) -> dict[str, Any]:
    """The config as stored, once its role is one the admin allows."""
    sagemaker = config.sagemaker
    if sagemaker is not None and sagemaker.role_arn is not None:
        allowed = settings.backends.sagemaker.role_allow_list
        if sagemaker.role_arn not in allowed:
            raise Unprocessable(
                f"backend_config.sagemaker.role_arn {sagemaker.role_arn!r} is not allowed: an "
                "admin lists the roles projects may use in "
                "STRATUS_BACKENDS__SAGEMAKER__ALLOWED_ROLE_ARNS",
                code="role_not_allowed",
            )
    return config.model_dump(mode="json", exclude_none=True)


def _check_backend(backend: str, settings: Settings) -> None:
    """A cloud backend must be enabled and configured here before a project may name it."""
    if backend not in CLOUD_BACKENDS:
        return
    problem = configuration_problem(backend, settings)
    if problem is not None:
        raise Unprocessable(
            f"default_backend {backend!r} cannot be used: {problem}", code="backend_unavailable"
        )


def create_project(
    session: Session, principal: Principal, data: ProjectCreate, settings: Settings
) -> ProjectRead:
    """Create a project; its creator becomes its first owner."""
    _check_backend(data.default_backend, settings)
    backend_config = _stored_backend_config(data.backend_config or BackendConfig(), settings)
    if repository.get_by_name(session, data.name) is not None:
        raise Conflict(f"A project named {data.name!r} already exists.", code="name_taken")
    project = Project(**data.model_dump(exclude={"backend_config"}), backend_config=backend_config)
    try:
        with session.begin_nested():
            session.add(project)
            session.flush()
    except IntegrityError as exc:
        raise Conflict(f"A project named {data.name!r} already exists.", code="name_taken") from exc
    session.add(Membership(project_id=project.id, principal_id=principal.id, role=Role.OWNER))
    audit.record(
        session,
        principal,
        "project.create",
        "project",
        project.id,
        project.id,
        {"name": project.name},
    )
    session.flush()
    return ProjectRead.model_validate(project)


def list_projects(
    session: Session, principal: Principal, page: PageRequest
) -> tuple[list[ProjectRead], str | None]:
    """Projects the caller is a member of (every project, for admins)."""
    rows, cursor = repository.list_visible(
        session, None if principal.is_admin else principal.id, page
    )
    retention = metrics.retention_days(session, [r.id for r in rows])
    return [_read(r, retention.get(r.id)) for r in rows], cursor


def _read(project: Project, retention_days: int | None) -> ProjectRead:
    read = ProjectRead.model_validate(project)
    read.metrics_retention_days = retention_days
    return read


def _read_one(session: Session, project: Project) -> ProjectRead:
    return _read(project, metrics.retention_days(session, [project.id]).get(project.id))


def _load(session: Session, principal: Principal, project_id: uuid.UUID, need: Role) -> Project:
    authorize(session, principal, project_id, need)
    project = repository.get(session, project_id)
    if project is None:  # deleted between the check and the read
        raise NotFound(f"Project {project_id} not found.")
    return project


def get_project(session: Session, principal: Principal, project_id: uuid.UUID) -> ProjectRead:
    return _read_one(session, _load(session, principal, project_id, Role.VIEWER))


def update_project(
    session: Session,
    principal: Principal,
    project_id: uuid.UUID,
    data: ProjectUpdate,
    settings: Settings,
) -> ProjectRead:
    """Change description, default backend, budget, retention or backend config (owners)."""
    project = _load(session, principal, project_id, Role.OWNER)
    if data.default_backend is not None:
        _check_backend(data.default_backend, settings)
    changes = data.model_dump(exclude_unset=True)
    for field, value in changes.items():
        if field == "metrics_retention_days":
            metrics.set_retention(session, project.id, value)  # None: keep forever
            continue
        if field == "backend_config":  # replaced as a whole; null clears it
            project.backend_config = _stored_backend_config(
                data.backend_config or BackendConfig(), settings
            )
            continue
        if value is None and field != "budget_usd":
            continue
        setattr(project, field, value)
    audit.record(
        session,
        principal,
        "project.update",
        "project",
        project.id,
        project.id,
        {"fields": sorted(changes)},
    )
    session.flush()
    return _read_one(session, project)


def delete_project(session: Session, principal: Principal, project_id: uuid.UUID) -> None:
    """Delete a project with nothing live in it (owners)."""
    project = _load(session, principal, project_id, Role.OWNER)
    if runs_repo.count_active(session, project_id):
        raise Conflict(
            "The project has training runs in flight; stop them first.", code="project_busy"
        )
    if deployments_repo.count_live(session, project_id):
        raise Conflict("The project has live deployments; delete them first.", code="project_busy")
    audit.record(
        session,
        principal,
        "project.delete",
        "project",
        project.id,
        project.id,
        {"name": project.name},
    )
    metrics.forget_project(session, project.id)  # points outlive the cascade; housekeeping
    session.delete(project)
    session.flush()


def list_members(
    session: Session, principal: Principal, project_id: uuid.UUID, page: PageRequest
) -> tuple[list[MemberRead], str | None]:
    authorize(session, principal, project_id, Role.VIEWER)
    rows, cursor = repository.list_members(session, project_id, page)
    return [MemberRead.model_validate(r) for r in rows], cursor


def get_member(
    session: Session, principal: Principal, project_id: uuid.UUID, principal_id: uuid.UUID
) -> MemberRead:
    authorize(session, principal, project_id, Role.VIEWER)
    membership = repository.get_membership(session, project_id, principal_id)
    if membership is None:
        raise NotFound(f"Principal {principal_id} is not a member of this project.")
    return MemberRead.model_validate(membership)


def put_member(
    session: Session,
    principal: Principal,
    project_id: uuid.UUID,
    principal_id: uuid.UUID,
    data: MemberPut,
) -> MemberRead:
    """Grant or change a principal's role (owners). The last owner cannot be demoted."""
    authorize(session, principal, project_id, Role.OWNER)
    key = keys_repo.get(session, principal_id)
    if key is None or key.revoked_at is not None:
        raise NotFound(f"Principal {principal_id} not found.")
    membership = repository.get_membership(session, project_id, principal_id)
    if membership is None:
        membership = Membership(project_id=project_id, principal_id=principal_id, role=data.role)
        session.add(membership)
    elif membership.role != data.role:
        if membership.role == Role.OWNER:
            _keep_an_owner(session, project_id, principal_id)
        if not repository.change_role_keeping_an_owner(
            session, project_id, principal_id, data.role
        ):
            raise Conflict("A project keeps at least one owner.", code="last_owner")
        session.refresh(membership)
    audit.record(
        session,
        principal,
        "member.put",
        "membership",
        principal_id,
        project_id,
        {"role": str(data.role)},
    )
    session.flush()
    return MemberRead.model_validate(membership)


def _keep_an_owner(session: Session, project_id: uuid.UUID, principal_id: uuid.UUID) -> None:
    """409 when ``principal_id`` is the project's last owner, with the owners locked, so a
    concurrent demotion or removal waits for this one and then counts again."""
    owners = repository.lock_owners(session, project_id)
    if principal_id in owners and len(owners) <= 1:
        raise Conflict("A project keeps at least one owner.", code="last_owner")


def remove_member(
    session: Session, principal: Principal, project_id: uuid.UUID, principal_id: uuid.UUID
) -> None:
    """Remove a member (owners). The last owner cannot be removed."""
    authorize(session, principal, project_id, Role.OWNER)
    membership = repository.get_membership(session, project_id, principal_id)
    if membership is None:
        raise NotFound(f"Principal {principal_id} is not a member of this project.")
    if membership.role == Role.OWNER:
        _keep_an_owner(session, project_id, principal_id)
    if not repository.remove_keeping_an_owner(session, project_id, principal_id):
        raise Conflict("A project keeps at least one owner.", code="last_owner")
    session.expunge(membership)
    audit.record(session, principal, "member.remove", "membership", principal_id, project_id)
    session.flush()
