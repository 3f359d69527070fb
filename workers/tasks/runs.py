"""Run tasks: submit, stop (woken by the outbox relay) and poll (beat, per backend).

Each loads in a short unit of work, calls the backend with no transaction open, then applies
the result with guarded updates (STYLE habit 6). A job is created exactly once per run: its
name comes from the run id, and a retried submit first looks for the job it may have made.
"""

from __future__ import annotations

import logging
import random
import uuid

from sqlalchemy.orm import Session

from app.backends.base import Backend, BackendError, JobState
from app.backends.registry import get_backend, poll_settings, unavailable_reason
from app.db import unit_of_work
from app.domain.evaluations.lifecycle import EVALUATIONS
from app.domain.jobs import JobKind, record_backend_unavailable
from app.domain.outbox import service as outbox
from app.domain.polling import service as polling
from app.domain.runs import lifecycle
from app.domain.runs.states import RunStatus
from app.settings import get_settings
from workers.celery_app import celery_app
from workers.tasks.work import acknowledge, defer, exclusive, held, payload_id, settle_error

logger = logging.getLogger(__name__)
S = RunStatus
POLL_LIMIT = 5000
# Every kind of batch job goes through the same submit, stop and poll pipeline.
KINDS = (lifecycle.RUNS, EVALUATIONS)


@celery_app.task(name="stratus.runs.submit")
def submit_run(message_id: int) -> None:
    """Submit the run named by an outbox message to its backend (exactly once)."""
    with exclusive(message_id) as held:
        if held:
            submit_job(message_id)


def submit_job(message_id: int, kind: JobKind = lifecycle.RUNS) -> None:
    """Submit the job (a run's, or another kind's) named by an outbox message."""
    settings = get_settings()
    with unit_of_work() as session:
        run_id = payload_id(session, message_id, f"{kind.noun}_id")
        if run_id is None:
            return
        run = kind.rows.get(session, run_id)
        stopped_mid_submit = run is not None and run.status == S.STOPPING and not run.external_id
        if run is None or (run.status not in (S.PENDING, S.SUBMITTING) and not stopped_mid_submit):
            outbox.acknowledge(session, message_id)
            return
        backend = get_backend(run.backend)
        if backend is None:
            waiting = f"the {kind.noun} stays {run.status} and will be submitted when one is"
            reason = unavailable_reason(run.backend, waiting)
            record_backend_unavailable(session, kind, run.id, reason)
            defer(session, message_id, reason)
            return
        plan = (
            None
            if stopped_mid_submit
            else lifecycle.prepare_submit(session, run.id, settings, kind)
        )
        if plan is None and not stopped_mid_submit:
            outbox.acknowledge(session, message_id)
            return
    if plan is None:  # stopped while a submit was under way
        _settle_stopped_submit(backend, run_id, message_id, kind)
        return
    name = plan.spec.job_name
    try:
        external_id = None
        if plan.retry:  # an earlier attempt may have created the job before dying
            found = kind.describe(backend, {name: JobState.UNKNOWN}, None)
            external_id = found[name].external_id if name in found else None
        if external_id is None:
            external_id = kind.submit(backend, plan.spec)
    except BackendError as error:
        if settle_error(message_id, error):
            with unit_of_work() as session:
                lifecycle.record_submit_failed(session, plan.run_id, str(error), kind)
                outbox.acknowledge(session, message_id)
        return
    with unit_of_work() as session:
        if lifecycle.record_submitted(session, plan.run_id, external_id, kind):
            _enqueue_stop(session, kind, plan.run_id)
        outbox.acknowledge(session, message_id)


def _enqueue_stop(session: Session, kind: JobKind, row_id: uuid.UUID) -> None:
    outbox.enqueue(session, kind.stop_topic, **{f"{kind.noun}_id": str(row_id)})


def _settle_stopped_submit(
    backend: Backend, run_id: uuid.UUID, message_id: int, kind: JobKind
) -> None:
    """Stopped while a submit was under way: stop the job it made, or finish the stop."""
    name = kind.job_name(run_id)
    try:
        found = kind.describe(backend, {name: JobState.UNKNOWN}, None)  # no transaction open
    except BackendError as error:
        if error.retryable:
            with unit_of_work() as session:
                defer(session, message_id, str(error))
            return
        found = {}
    with unit_of_work() as session:
        if name in found:
            lifecycle.record_submitted(session, run_id, found[name].external_id, kind)
            _enqueue_stop(session, kind, run_id)
        else:
            kind.transition(
                session, run_id, S.STOPPING, S.STOPPED, status_reason="stopped before a job existed"
            )
        outbox.acknowledge(session, message_id)


@celery_app.task(name="stratus.runs.stop")
def stop_run(message_id: int) -> None:
    """Ask the backend to stop the job of a run in ``stopping``."""
    with exclusive(message_id) as holding:
        if holding:
            stop_job(message_id)


def stop_job(message_id: int, kind: JobKind = lifecycle.RUNS) -> None:
    """Ask the backend to stop the job of a row in ``stopping``."""
    with unit_of_work() as session:
        run_id = payload_id(session, message_id, f"{kind.noun}_id")
        if run_id is None:
            return
        run = kind.rows.get(session, run_id)
        if run is None or run.status != S.STOPPING:
            outbox.acknowledge(session, message_id)
            return
        backend = get_backend(run.backend)
        if backend is None:
            waiting = f"the {kind.noun} stays stopping and the stop will be sent when one is"
            reason = unavailable_reason(run.backend, waiting)
            record_backend_unavailable(session, kind, run.id, reason)
            defer(session, message_id, reason)
            return
        if run.external_id is None:
            # No job yet: the submit task sees ``stopping`` when it lands and queues a stop.
            outbox.acknowledge(session, message_id)
            return
    try:
        kind.stop(backend, kind.job_name(run_id))
    except BackendError as error:
        if not settle_error(message_id, error):
            return
        logger.warning("stopping %s %s failed for good: %s", kind.noun, run_id, error)
    acknowledge(message_id)


@celery_app.task(name="stratus.runs.schedule_poll")
def schedule_poll(backend_name: str) -> None:
    """Queue one poll of a backend after a random delay, so pollers do not fire in step."""
    jitter = poll_settings(backend_name)[1]
    poll_runs.apply_async(args=(backend_name,), countdown=random.uniform(0, jitter))  # noqa: S311


@celery_app.task(name="stratus.runs.poll")
def poll_runs(backend_name: str) -> int:
    """Apply what changed on a backend's jobs since the last poll; returns runs moved."""
    return poll_once(backend_name)


def poll_once(backend_name: str) -> int:
    """One poll cycle of a backend's in-flight runs (also driven directly by benchmarks).

    The cycle pages through every in-flight run, ``POLL_LIMIT`` per backend call, so none is
    starved however many there are; the window closes only once all pages were applied.
    """
    backend = get_backend(backend_name)
    if backend is None:
        return 0
    moved = 0
    for kind in KINDS:
        # One poller per backend and kind at a time.
        with held(f"poll:{kind.poll_key}:{backend_name}") as holding:
            if holding:
                moved += _poll(backend, backend_name, kind)
    return moved


def _poll(backend: Backend, backend_name: str, kind: JobKind) -> int:
    key = f"{kind.poll_key}:{backend_name}"
    with unit_of_work() as session:
        window = polling.open_window(session, key)
    if window is None:
        return 0
    moved = 0
    after: uuid.UUID | None = None
    while True:
        with unit_of_work() as session:
            page = lifecycle.in_flight_page(session, backend_name, after, POLL_LIMIT, kind)
        if not page.known:
            break
        known = page.known
        try:
            reported = kind.describe(backend, {n: s for n, (_, s) in known.items()}, window.since)
        except BackendError as error:
            # The window stays open: the next cycle asks again from the same point.
            with unit_of_work() as session:
                delay = polling.back_off(session, key, poll_settings(backend_name)[0])
            logger.warning(
                "polling %s failed (%s); next poll in %.0f s", backend_name, error, delay
            )
            return moved
        # Metrics first: a job reported as ended has printed everything, and its points must
        # be in before its end is applied (which stores a final value only for a metric with
        # no series).
        _pull_training_metrics(backend_name, page.cursors, kind)
        with unit_of_work() as session:
            for run_id, job in lifecycle.job_statuses_to_apply(known, reported):
                try:
                    with session.begin_nested():
                        moved += lifecycle.apply_job_status(session, run_id, job, kind)
                except Exception:  # one bad row must not stop the others
                    logger.exception("applying %s to %s %s failed", job.state, kind.noun, run_id)
        after = page.last_id
        if not page.full:
            break
    with unit_of_work() as session:
        polling.close_window(session, key, window)
    return moved


def _pull_training_metrics(
    backend_name: str, cursors: dict[uuid.UUID, str | None], kind: JobKind = lifecycle.RUNS
) -> None:
    backend = get_backend(backend_name)
    if backend is None:
        return
    for run_id, cursor in cursors.items():
        try:
            page = kind.fetch_metrics(backend, kind.job_name(run_id), cursor)
        except BackendError as error:
            logger.warning("live metrics of %s %s unavailable: %s", kind.noun, run_id, error)
            continue
        if page.points or page.next_cursor != cursor:
            with unit_of_work() as session:
                lifecycle.store_training_metrics(session, run_id, page, kind)
