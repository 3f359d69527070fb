"""The evaluation state machine: every status change goes through ``transition()``.

An evaluation is a batch job like a training run, so it moves the same way (and the job
pipeline of runs drives it): pending -> submitting -> running -> completed | failed, with
stops through stopping."""

from __future__ import annotations

from enum import StrEnum

from app.domain.lifecycle import Machine
from app.domain.runs.states import ALLOWED as RUN_MOVES


class EvaluationStatus(StrEnum):
    PENDING = "pending"
    SUBMITTING = "submitting"
    RUNNING = "running"
    STOPPING = "stopping"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"


ALLOWED: dict[EvaluationStatus, frozenset[EvaluationStatus]] = {
    EvaluationStatus(current): frozenset(EvaluationStatus(t) for t in targets)
    for current, targets in RUN_MOVES.items()
}
MACHINE = Machine("evaluation", ALLOWED)
TERMINAL = MACHINE.terminal
