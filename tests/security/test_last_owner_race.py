"""The last owner of a project and the last admin key survive concurrent demotions, removals
and revocations: on PostgreSQL, two real connections racing, exactly one wins."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from app.clock import utcnow
from app.db import Base, unit_of_work
from app.domain import models  # noqa: F401 - every table in Base.metadata
from app.domain.access import Role
from app.domain.api_keys import service as keys
from app.domain.api_keys.models import ApiKey
from app.domain.projects import service as projects
from app.domain.projects.models import Membership
from app.domain.projects.schemas import MemberPut
from app.errors import AppError, Conflict
from tests.factories import Key, make_key, make_project

Factory = sessionmaker[Session]


@pytest.fixture
def factory(pg_engine: Engine) -> Iterator[Factory]:
    """Sessions that really commit, each on its own connection; tables emptied afterwards."""
    yield sessionmaker(bind=pg_engine, expire_on_commit=False)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with pg_engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} CASCADE"))


def _owners(factory: Factory, project_id: uuid.UUID) -> int:
    with unit_of_work(factory) as session:
        return (
            session.scalar(
                select(func.count())
                .select_from(Membership)
                .where(Membership.project_id == project_id, Membership.role == "owner")
            )
            or 0
        )


def _active_admins(factory: Factory) -> int:
    with unit_of_work(factory) as session:
        return keys.repository.count_active_admins(session)


def _race(factory: Factory, actions: list[Callable[[Session], Any]]) -> list[str]:
    """Run each action in its own transaction on its own thread, all released at once.

    The loser answers 409 when it counted while the winner held the rows, or 403/404 when the
    winner had already committed (it is no longer an owner or a member): a refusal either way.
    """
    barrier = threading.Barrier(len(actions))
    outcomes: list[str] = []

    def attempt(action: Callable[[Session], Any]) -> None:
        barrier.wait()
        try:
            with unit_of_work(factory) as session:
                action(session)
            outcomes.append("ok")
        except AppError as exc:
            outcomes.append("refused" if exc.status in (403, 404, 409) else exc.code)

    threads = [threading.Thread(target=attempt, args=(a,)) for a in actions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return sorted(outcomes)


def _two_owners(factory: Factory) -> tuple[Key, Key, uuid.UUID]:
    with unit_of_work(factory) as session:
        a, b = make_key(session), make_key(session)
        project = make_project(session, (a, Role.OWNER), (b, Role.OWNER))
        return a, b, project.id


def _demote(owner: Key, other: Key, project_id: uuid.UUID) -> Callable[[Session], Any]:
    return lambda s: projects.put_member(
        s, owner.principal, project_id, other.id, MemberPut(role=Role.EDITOR)
    )


def _remove(owner: Key, other: Key, project_id: uuid.UUID) -> Callable[[Session], Any]:
    return lambda s: projects.remove_member(s, owner.principal, project_id, other.id)


def test_the_second_demotion_waits_for_the_first_and_then_refuses(factory: Factory) -> None:
    a, b, project_id = _two_owners(factory)
    first = factory()
    projects.put_member(first, a.principal, project_id, b.id, MemberPut(role=Role.EDITOR))
    # a has demoted b but not committed; b now demotes a on another connection.
    outcome: list[str] = []

    def second() -> None:
        try:
            with unit_of_work(factory) as session:
                _demote(b, a, project_id)(session)
            outcome.append("ok")
        except Conflict as exc:
            outcome.append(exc.code)

    thread = threading.Thread(target=second)
    thread.start()
    try:
        thread.join(timeout=1.0)
        assert thread.is_alive(), "the second demotion must wait for the first's owner rows"
        first.commit()
    finally:
        first.close()
        thread.join(timeout=30)
    assert outcome == ["last_owner"]
    assert _owners(factory, project_id) == 1


@pytest.mark.parametrize("verb", [_demote, _remove], ids=["demote", "remove"])
def test_two_owners_acting_on_each_other_at_once_leave_one_owner(
    factory: Factory, verb: Callable[[Key, Key, uuid.UUID], Callable[[Session], Any]]
) -> None:
    for _ in range(5):
        a, b, project_id = _two_owners(factory)
        outcomes = _race(factory, [verb(a, b, project_id), verb(b, a, project_id)])
        assert outcomes == ["ok", "refused"]
        assert _owners(factory, project_id) == 1


def test_two_admins_revoking_each_other_at_once_leave_one_admin(factory: Factory) -> None:
    for _ in range(5):
        with unit_of_work(factory) as session:
            session.execute(text("UPDATE api_keys SET revoked_at = now()"))
            a, b = make_key(session, admin=True), make_key(session, admin=True)
        outcomes = _race(
            factory,
            [
                lambda s, a=a, b=b: keys.revoke_key(s, a.principal, b.id),
                lambda s, a=a, b=b: keys.revoke_key(s, b.principal, a.id),
            ],
        )
        assert outcomes == ["ok", "refused"]
        assert _active_admins(factory) == 1


def test_the_second_revocation_waits_and_refuses_to_revoke_the_last_admin(
    factory: Factory,
) -> None:
    with unit_of_work(factory) as session:
        a, b = make_key(session, admin=True), make_key(session, admin=True)
    first = factory()
    keys.revoke_key(first, a.principal, b.id)
    outcome: list[str] = []

    def second() -> None:
        try:
            with unit_of_work(factory) as session:
                keys.revoke_key(session, b.principal, a.id)
            outcome.append("ok")
        except Conflict as exc:
            outcome.append(exc.code)

    thread = threading.Thread(target=second)
    thread.start()
    try:
        thread.join(timeout=1.0)
        assert thread.is_alive(), "the second revocation must wait for the first's admin rows"
        first.commit()
    finally:
        first.close()
        thread.join(timeout=30)
    assert outcome == ["last_admin"]
    assert _active_admins(factory) == 1
    with unit_of_work(factory) as session:
        assert session.get(ApiKey, a.id).revoked_at is None  # type: ignore[union-attr]


def test_the_conditional_statements_keep_an_owner_and_an_admin_on_sqlite(
    sqlite_factory: Factory,
) -> None:
    with unit_of_work(sqlite_factory) as session:
        a, b = make_key(session, admin=True), make_key(session, admin=True)
        project_id = make_project(session, (a, Role.OWNER), (b, Role.OWNER)).id
    with unit_of_work(sqlite_factory) as session:
        projects.remove_member(session, a.principal, project_id, b.id)
    with pytest.raises(Conflict), unit_of_work(sqlite_factory) as session:
        projects.put_member(session, a.principal, project_id, a.id, MemberPut(role=Role.EDITOR))
    # The statement itself refuses, whatever a stale read before it believed.
    with unit_of_work(sqlite_factory) as session:
        assert not projects.repository.remove_keeping_an_owner(session, project_id, a.id)
        assert not projects.repository.change_role_keeping_an_owner(
            session, project_id, a.id, "viewer"
        )
    with unit_of_work(sqlite_factory) as session:
        keys.revoke_key(session, a.principal, b.id)
    with pytest.raises(Conflict), unit_of_work(sqlite_factory) as session:
        keys.revoke_key(session, a.principal, a.id)
    with unit_of_work(sqlite_factory) as session:
        assert not keys.repository.revoke_keeping_an_admin(session, a.id, utcnow())
        assert keys.repository.count_active_admins(session) == 1
    assert _owners(sqlite_factory, project_id) == 1
