"""Who may do what: principals, project roles and the one authorization check."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, TypeVar

from sqlalchemy.orm import Session

from app.domain.projects import repository as projects_repo
from app.errors import AppError, Forbidden, NotFound


class Role(StrEnum):
    VIEWER = "viewer"
    EDITOR = "editor"
    OWNER = "owner"


RANK = {Role.VIEWER: 1, Role.EDITOR: 2, Role.OWNER: 3}


@dataclass(frozen=True)
class Principal:
    """The caller: an API key. Admin keys manage keys and see every project."""

    id: uuid.UUID
    name: str
    is_admin: bool


def authorize(
    session: Session,
    principal: Principal,
    project_id: uuid.UUID,
    need: Role,
    missing: AppError | None = None,
) -> Role:
    """The caller's role on the project; 404 when it is not a member, 403 when too weak.

    ``missing`` is the error for a non-member, so an object of another project answers
    exactly as an object that does not exist.
    """
    if principal.is_admin:
        if projects_repo.get(session, project_id) is None:
            raise missing or NotFound(f"Project {project_id} not found.")
        return Role.OWNER
    role = projects_repo.get_role(session, project_id, principal.id)
    return check_role(
        principal, role, need, missing or NotFound(f"Project {project_id} not found.")
    )


def check_role(principal: Principal, role: str | None, need: Role, missing: AppError) -> Role:
    """The caller's role, already loaded with the object; ``missing`` for a non-member."""
    if principal.is_admin:
        return Role.OWNER
    if role is None:
        raise missing
    if RANK[Role(role)] < RANK[need]:
        raise Forbidden(f"This needs the {need} role on the project; the key has {role}.")
    return Role(role)


class ProjectOwned(Protocol):
    @property
    def project_id(self) -> uuid.UUID: ...


Owned = TypeVar("Owned", bound=ProjectOwned)


def visible(
    session: Session,
    principal: Principal,
    obj: Owned | None,
    need: Role,
    what: str,
    obj_id: uuid.UUID,
) -> Owned:
    """``obj`` once the caller has ``need`` on its project.

    A missing object and another project's object give the same 404, so ids do not reveal
    what exists elsewhere.
    """
    missing = NotFound(f"{what} {obj_id} not found.")
    if obj is None:
        raise missing
    authorize(session, principal, obj.project_id, need, missing=missing)
    return obj
