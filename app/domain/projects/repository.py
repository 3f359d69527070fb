"""Every query on projects and memberships."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from app.domain.pagination import PageRequest, paginate
from app.domain.projects.models import Membership, Project


def get(session: Session, project_id: uuid.UUID) -> Project | None:
    return session.get(Project, project_id)


def get_by_name(session: Session, name: str) -> Project | None:
    return session.scalar(select(Project).where(Project.name == name))


def get_role(session: Session, project_id: uuid.UUID, principal_id: uuid.UUID) -> str | None:
    return session.scalar(
        select(Membership.role).where(
            Membership.project_id == project_id, Membership.principal_id == principal_id
        )
    )


def list_visible(
    session: Session, principal_id: uuid.UUID | None, page: PageRequest
) -> tuple[Sequence[Project], str | None]:
    """Projects the principal is a member of (all of them when ``principal_id`` is None)."""
    stmt = select(Project)
    if principal_id is not None:
        stmt = stmt.join(Membership, Membership.project_id == Project.id).where(
            Membership.principal_id == principal_id
        )
    return paginate(session, stmt, Project.id, page)


def get_membership(
    session: Session, project_id: uuid.UUID, principal_id: uuid.UUID
) -> Membership | None:
    return session.scalar(
        select(Membership).where(
            Membership.project_id == project_id, Membership.principal_id == principal_id
        )
    )


def list_members(
    session: Session, project_id: uuid.UUID, page: PageRequest
) -> tuple[Sequence[Membership], str | None]:
    stmt = select(Membership).where(Membership.project_id == project_id)
    return paginate(session, stmt, Membership.id, page)


def count_owners(session: Session, project_id: uuid.UUID) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(Membership)
            .where(Membership.project_id == project_id, Membership.role == "owner")
        )
        or 0
    )


def lock_owners(session: Session, project_id: uuid.UUID) -> set[uuid.UUID]:
    """The project's owners, their membership rows locked until commit.

    A concurrent demotion or removal of an owner waits here, then sees the outcome: two owners
    demoting each other at once cannot both pass a "not the last owner" check.
    """
    return set(
        session.scalars(
            select(Membership.principal_id)
            .where(Membership.project_id == project_id, Membership.role == "owner")
            .with_for_update()
        )
    )


def _other_owner_exists(project_id: uuid.UUID, principal_id: uuid.UUID) -> Any:
    other = select(Membership.id).where(
        Membership.project_id == project_id,
        Membership.role == "owner",
        Membership.principal_id != principal_id,
    )
    return other.exists()


def change_role_keeping_an_owner(
    session: Session, project_id: uuid.UUID, principal_id: uuid.UUID, role: str
) -> bool:
    """Set a member's role unless that would leave the project without an owner; False then.

    The WHERE re-checks for another owner in the same statement, for databases that do not
    lock rows (SQLite serialises the writing statement itself).
    """
    result = session.execute(
        update(Membership)
        .where(
            Membership.project_id == project_id,
            Membership.principal_id == principal_id,
            (Membership.role != "owner") | _other_owner_exists(project_id, principal_id),
        )
        .values(role=role)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def remove_keeping_an_owner(
    session: Session, project_id: uuid.UUID, principal_id: uuid.UUID
) -> bool:
    """Delete a membership unless it is the project's last owner; False then."""
    result = session.execute(
        delete(Membership)
        .where(
            Membership.project_id == project_id,
            Membership.principal_id == principal_id,
            (Membership.role != "owner") | _other_owner_exists(project_id, principal_id),
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def backend_option(
    session: Session, project_id: uuid.UUID, backend: str, option: str
) -> str | None:
    """A project's setting for a backend, e.g. its SageMaker role ARN."""
    project = session.get(Project, project_id)
    value = (project.backend_config or {}).get(backend, {}).get(option) if project else None
    return value if isinstance(value, str) else None
