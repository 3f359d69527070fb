"""Limits that hold: a project's budget and its quotas, checked before work is recorded.

Every check lives here, so runs, deployments, the optimizer and metric ingest refuse (or
clamp) by the same rules. Each refusal names its limit and the setting that raises it.

Budget: spent (the cost accounting) + committed (what work in flight is still projected to
cost: a pending or running run's remaining ``max_runtime_seconds``, and the next hour of every
live deployment at its desired count) + the new projection must not exceed the budget.
Unpriced instance types (``local``) cost nothing, and a request that projects nothing is
never refused for money.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Collection
from decimal import Decimal
from functools import partial
from typing import Literal

from sqlalchemy.orm import Session

from app.backends.prices import hourly_price
from app.clock import utcnow
from app.domain.costs.service import spent_usd
from app.domain.deployments import repository as deployments_repo
from app.domain.deployments.models import Deployment
from app.domain.events.service import record_event
from app.domain.metrics import aggregates
from app.domain.projects.models import Project
from app.domain.quotas import repository
from app.domain.runs import repository as runs_repo
from app.domain.runs.schemas import RunSpec
from app.errors import Conflict, Unprocessable
from app.settings import QuotaSettings, get_settings

HOUR_S = 3600.0
RUNS_SETTING = "STRATUS_QUOTAS__ACTIVE_RUNS_PER_PROJECT"
INSTANCES_SETTING = "STRATUS_QUOTAS__DEPLOYMENT_INSTANCES_PER_PROJECT"
NAMES_SETTING = "STRATUS_QUOTAS__METRIC_NAMES_PER_SUBJECT"


def _limits() -> QuotaSettings:
    return get_settings().quotas


def _usd(instance_type: str | None, instance_seconds: float) -> float:
    price = hourly_price(instance_type or "local")
    return 0.0 if price is None else price * max(0.0, instance_seconds) / HOUR_S


def _quota_exceeded(detail: str, limit: int, setting: str) -> Conflict:
    return Conflict(detail, code="quota_exceeded", extra={"limit": limit, "setting": setting})


# --- budget ------------------------------------------------------------------------------


def committed_usd(session: Session, project_id: uuid.UUID) -> float:
    """What work in flight is still projected to cost: runs' remaining runtime, deployments'
    next hour at their desired count."""
    now = utcnow()
    total = 0.0
    for instance_type, count, max_runtime, started in repository.runs_to_come(session, project_id):
        elapsed = (now - started).total_seconds() if started else 0.0
        remaining = max(0.0, (max_runtime or 86400) - elapsed)
        total += _usd(instance_type, remaining * (count or 1))
    for instance_type, desired in repository.held_capacity(session, project_id):
        total += _usd(instance_type, desired * HOUR_S)
    return total


def check_evaluation(session: Session, project: Project, spec: RunSpec) -> None:
    """Refuse an evaluation whose longest run would take the project over budget (409)."""
    seconds = spec.instance_count * spec.max_runtime_seconds
    check_budget(session, project, _usd(spec.instance_type, seconds), "This evaluation")


def check_budget(session: Session, project: Project, projected_usd: float, what: str) -> None:
    """409 ``budget_exceeded`` when ``projected_usd`` more would take the project over budget."""
    if project.budget_usd is None or projected_usd <= 0:
        return
    budget = float(Decimal(project.budget_usd))
    spent = spent_usd(session, project.id)
    committed = committed_usd(session, project.id)
    if round(spent + committed + projected_usd, 4) <= budget:
        return
    figures = {
        "spent_usd": round(spent, 4),
        "committed_usd": round(committed, 4),
        "projected_usd": round(projected_usd, 4),
        "budget_usd": round(budget, 4),
    }
    detail = (
        f"{what} would take the project over its budget: spent ${spent:,.2f} + committed "
        f"${committed:,.2f} (work in flight) + projected ${projected_usd:,.2f} > budget "
        f"${budget:,.2f}. Raise the project's budget_usd or free capacity first."
    )
    data = {"project_id": str(project.id), "refused": what, "detail": detail, **figures}
    raise Conflict(
        detail,
        code="budget_exceeded",
        extra=figures,
        # The request rolls back; the refusal is recorded after it, in its own transaction.
        after_rollback=partial(_budget_exceeded, project.id, data),
    )


def _budget_exceeded(project_id: uuid.UUID, data: dict[str, object], session: Session) -> None:
    record_event(session, "budget.exceeded", project_id, project_id, data)


# --- runs --------------------------------------------------------------------------------


def check_run(session: Session, project: Project, spec: RunSpec) -> None:
    """Refuse a new run over the project's active-run quota or its budget (409)."""
    # One creator at a time per project, so two requests cannot both take the last slot.
    deployments_repo.lock_project(session, project.id)
    limit = _limits().active_runs_per_project
    active = runs_repo.count_active(session, project.id)
    if active >= limit:
        raise _quota_exceeded(
            f"The project has {active:,} active runs (pending to stopping), its limit of "
            f"{limit:,}; wait for some to finish or raise {RUNS_SETTING}.",
            limit,
            RUNS_SETTING,
        )
    seconds = spec.instance_count * spec.max_runtime_seconds
    check_budget(session, project, _usd(spec.instance_type, seconds), "This run")


# --- deployments -------------------------------------------------------------------------


def _check_instances(
    session: Session, project_id: uuid.UUID, desired: int, exclude: uuid.UUID | None
) -> None:
    limit = _limits().deployment_instances_per_project
    others = repository.desired_total(session, project_id, exclude)
    if others + desired > limit:
        raise _quota_exceeded(
            f"The project's live deployments would want {others + desired:,} instances "
            f"({others:,} elsewhere + {desired:,} here), over its limit of {limit:,}; "
            f"raise {INSTANCES_SETTING}.",
            limit,
            INSTANCES_SETTING,
        )


def check_deployment(
    session: Session, project: Project, instance_type: str, desired_instances: int
) -> None:
    """Refuse a new deployment over the instance quota or the budget (409)."""
    _check_instances(session, project.id, desired_instances, None)
    projected = _usd(instance_type, desired_instances * HOUR_S)
    check_budget(session, project, projected, "This deployment's first hour")


def check_resize(session: Session, deployment: Deployment, desired: int, maximum: int) -> None:
    """Refuse raising a deployment's desired or max instances over the quota or budget (409).

    Raising ``max_instances`` alone counts for the budget, as the optimizer may scale up to it;
    the quota counts desired instances only.
    """
    rise = max(desired - deployment.desired_instances, maximum - deployment.max_instances, 0)
    if rise == 0:
        return
    project = deployments_repo.lock_project(session, deployment.project_id)
    if desired > deployment.desired_instances:
        _check_instances(session, deployment.project_id, desired, deployment.id)
    if project is not None:
        projected = _usd(deployment.instance_type, rise * HOUR_S)
        check_budget(session, project, projected, f"{rise} more instance(s) for an hour")


def clamp_desired(session: Session, deployment: Deployment, target: int) -> int:
    """The optimizer's target, lowered to what the instance quota leaves (never below the
    current desired count: a full quota holds a deployment, it does not shrink it)."""
    if target <= deployment.desired_instances:
        return target
    limit = _limits().deployment_instances_per_project
    room = limit - repository.desired_total(session, deployment.project_id, deployment.id)
    return max(deployment.desired_instances, min(target, room))


# --- metric names ------------------------------------------------------------------------


class _KnownNames:
    """Per process: names each subject is known to have stored, so a batch of known names
    costs no query. Only names read from the database are remembered (never a batch that
    may still roll back); entries expire, so the map stays small and fresh."""

    def __init__(self, size: int = 1024, ttl_s: float = 300.0) -> None:
        self._size, self._ttl = size, ttl_s
        self._items: OrderedDict[uuid.UUID, tuple[float, frozenset[str]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, subject_id: uuid.UUID) -> frozenset[str] | None:
        with self._lock:
            item = self._items.get(subject_id)
            if item is None or item[0] < time.monotonic():
                return None
            self._items.move_to_end(subject_id)
            return item[1]

    def put(self, subject_id: uuid.UUID, names: frozenset[str]) -> None:
        with self._lock:
            self._items[subject_id] = (time.monotonic() + self._ttl, names)
            self._items.move_to_end(subject_id)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


known_names = _KnownNames()


def _new_names(
    session: Session, subject_id: uuid.UUID, names: Collection[str]
) -> tuple[int, set[str]]:
    """(names the subject has stored, the given names it has not); (-1, {}) when all known.

    At most one query: an index walk over the subject's distinct names.
    """
    known = known_names.get(subject_id)
    if known is not None and known.issuperset(names):
        return -1, set()
    stored = frozenset(aggregates.names(session, subject_id))
    known_names.put(subject_id, stored)
    return len(stored), set(names) - stored


def check_metric_names(
    session: Session,
    subject_type: Literal["run", "deployment", "evaluation"],
    subject_id: uuid.UUID,
    names: Collection[str],
) -> None:
    """422 ``too_many_metric_names`` when a batch would give the subject too many names.

    Batches of new names that race each other may each pass on the count before the others
    commit, so the cap can be overshot by what such concurrent batches add; locking the
    subject on every ingest would cost more than that is worth.
    """
    stored, new = _new_names(session, subject_id, names)
    limit = _limits().metric_names_per_subject
    if not new or stored + len(new) <= limit:
        return
    shown = ", ".join(sorted(new)[:5]) + (", ..." if len(new) > 5 else "")
    raise Unprocessable(
        f"A {subject_type} has at most {limit:,} distinct metric names; this one has "
        f"{stored:,} and the batch adds {len(new):,} more ({shown}). "
        f"Raise {NAMES_SETTING} to allow more.",
        code="too_many_metric_names",
        extra={"limit": limit, "setting": NAMES_SETTING},
    )


def admit_metric_names(
    session: Session, subject_id: uuid.UUID, names: Collection[str]
) -> tuple[set[str], list[str]]:
    """For metrics a worker pulls: (names that may be stored, names dropped over the limit).

    New names are admitted in sorted order while room remains; nothing is raised.
    """
    stored, new = _new_names(session, subject_id, names)
    if not new:
        return set(names), []
    room = max(0, _limits().metric_names_per_subject - stored)
    ordered = sorted(new)
    dropped = ordered[room:]
    return set(names) - set(dropped), dropped


def dropped_note(dropped: list[str]) -> str:
    """The note a run or deployment carries when pulled metric names were dropped."""
    limit = _limits().metric_names_per_subject
    shown = ", ".join(dropped[:5]) + (", ..." if len(dropped) > 5 else "")
    return (
        f"{len(dropped)} metric name(s) dropped over the limit of {limit:,} names "
        f"({shown}); raise {NAMES_SETTING} to keep them"
    )
