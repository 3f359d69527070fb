"""The deployment state machine: every status change goes through ``transition()``."""

from __future__ import annotations

from enum import StrEnum

from app.errors import Conflict


class DeploymentStatus(StrEnum):
    CREATING = "creating"
    IN_SERVICE = "in_service"
    UPDATING = "updating"
    DELETING = "deleting"
    DELETED = "deleted"
    FAILED = "failed"


S = DeploymentStatus
ALLOWED: dict[DeploymentStatus, frozenset[DeploymentStatus]] = {
    # creating -> deleting: deleted before the endpoint came up; the delete task cleans up.
    S.CREATING: frozenset({S.IN_SERVICE, S.FAILED, S.DELETING}),
    S.IN_SERVICE: frozenset({S.UPDATING, S.DELETING, S.FAILED}),
    S.UPDATING: frozenset({S.IN_SERVICE, S.FAILED, S.DELETING}),
    S.DELETING: frozenset({S.DELETED, S.FAILED}),
    # A failed endpoint may still hold resources, so its only way out is a delete.
    S.FAILED: frozenset({S.DELETING}),
    S.DELETED: frozenset(),
}
TERMINAL = frozenset(s for s, nxt in ALLOWED.items() if not nxt)
# Capacity changes are accepted here; the pending create/update applies the latest desired.
ADJUSTABLE = frozenset({S.CREATING, S.IN_SERVICE, S.UPDATING})


def can_transition(current: DeploymentStatus, target: DeploymentStatus) -> bool:
    return target in ALLOWED[current]


def check_transition(current: DeploymentStatus, target: DeploymentStatus) -> None:
    """Raise 409 when ``current -> target`` is not an allowed move."""
    if not can_transition(current, target):
        raise Conflict(
            f"A deployment cannot go from {current} to {target}.", code="invalid_transition"
        )
