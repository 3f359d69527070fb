"""The one state-machine helper every stateful resource uses.

A resource names its states (a ``StrEnum``) and the moves between them (``ALLOWED``); a
``Machine`` checks a move, and ``guarded_update`` applies it with ``UPDATE … WHERE id = :id
AND status = :expected`` so a writer that lost a race sees 0 rows and skips (STYLE habit 6).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import update
from sqlalchemy.orm import Mapped, Session

from app.errors import Conflict

E = TypeVar("E", bound=StrEnum)


class Machine(Generic[E]):
    """A resource's allowed status moves; terminal states are those with no way out."""

    def __init__(self, resource: str, allowed: Mapping[E, frozenset[E]]) -> None:
        self.resource = resource
        self.allowed = allowed
        self.terminal = frozenset(s for s, nxt in allowed.items() if not nxt)

    def can(self, current: E, target: E) -> bool:
        return target in self.allowed[current]

    def check(self, current: E, target: E) -> None:
        """Raise 409 when ``current -> target`` is not an allowed move."""
        if not self.can(current, target):
            raise Conflict(
                f"A {self.resource} cannot go from {current} to {target}.",
                code="invalid_transition",
            )


class HasStatus(Protocol):
    id: Mapped[uuid.UUID]
    status: Mapped[str]


class StatusRepository:
    """The guarded writes shared by the repositories of stateful resources."""

    def __init__(self, model: type[Any]) -> None:
        self.model = model

    def get(self, session: Session, row_id: uuid.UUID) -> Any:
        return session.get(self.model, row_id)

    def guarded_update(
        self, session: Session, row_id: uuid.UUID, expected: str, values: dict[str, Any]
    ) -> bool:
        """``UPDATE … WHERE id = :id AND status = :expected``; False when the row moved on."""
        model = self.model
        result = session.execute(
            update(model)
            .where(model.id == row_id, model.status == expected)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


def guarded_transition(
    session: Session,
    machine: Machine[E],
    rows: StatusRepository,
    row_id: uuid.UUID,
    expected: E,
    target: E,
    values: dict[str, Any],
) -> bool:
    """Check ``expected -> target`` against the machine, then apply it guarded."""
    machine.check(expected, target)
    return rows.guarded_update(session, row_id, expected, {"status": target, **values})
