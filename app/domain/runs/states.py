"""The training-run state machine: every status change goes through ``transition()``."""

from __future__ import annotations

from enum import StrEnum

from app.domain.lifecycle import Machine


class RunStatus(StrEnum):
    PENDING = "pending"
    SUBMITTING = "submitting"
    RUNNING = "running"
    STOPPING = "stopping"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"


S = RunStatus
ALLOWED: dict[RunStatus, frozenset[RunStatus]] = {
    # pending -> stopped: stopped before any job existed; pending -> failed: refused at submit.
    S.PENDING: frozenset({S.SUBMITTING, S.STOPPED, S.FAILED}),
    S.SUBMITTING: frozenset({S.RUNNING, S.FAILED, S.STOPPING, S.COMPLETED}),
    S.RUNNING: frozenset({S.COMPLETED, S.FAILED, S.STOPPING}),
    # A job may finish or fail on its own before the stop lands.
    S.STOPPING: frozenset({S.STOPPED, S.COMPLETED, S.FAILED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
    S.STOPPED: frozenset(),
}
MACHINE = Machine("run", ALLOWED)
TERMINAL = MACHINE.terminal
ACTIVE = frozenset(RunStatus) - TERMINAL
can_transition = MACHINE.can
check_transition = MACHINE.check
