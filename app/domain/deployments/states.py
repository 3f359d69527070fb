"""The deployment state machine: every status change goes through ``transition()``."""

from __future__ import annotations

from enum import StrEnum

from app.domain.lifecycle import Machine


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
MACHINE = Machine("deployment", ALLOWED)
TERMINAL = MACHINE.terminal
# Capacity changes are accepted here; the pending create/update applies the latest desired.
ADJUSTABLE = frozenset({S.CREATING, S.IN_SERVICE, S.UPDATING})

can_transition = MACHINE.can
check_transition = MACHINE.check
