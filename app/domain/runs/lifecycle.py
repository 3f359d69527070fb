"""A run's life on its backend: the service side of the submit, stop and poll tasks.

Tasks call these in short units of work and make the backend call between them, never
inside a transaction (STYLE habit 6). Every status change goes through ``transition()``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.backends.base import JobState, JobStatus, MetricDefinition, MetricPage, TrainingJobSpec
from app.backends.naming import job_name
from app.clock import utcnow
from app.domain.bundles import service as bundles
from app.domain.jobs import JobKind
from app.domain.metrics import repository as metrics_repo
from app.domain.model_versions import service as model_versions
from app.domain.outbox import service as outbox
from app.domain.projects import repository as projects_repo
from app.domain.quotas import service as quotas
from app.domain.runs import repository
from app.domain.runs.models import TrainingRun
from app.domain.runs.service import transition
from app.domain.runs.states import RunStatus
from app.settings import Settings

S = RunStatus
logger = logging.getLogger(__name__)
# What Stratus believes the job is doing, in the backend's words, for each in-flight status.
KNOWN_STATE = {
    S.SUBMITTING: JobState.STARTING,
    S.RUNNING: JobState.RUNNING,
    S.STOPPING: JobState.STOPPING,
}


@dataclass(frozen=True)
class SubmitPlan:
    run_id: uuid.UUID
    backend: str
    spec: TrainingJobSpec
    retry: bool  # a previous attempt may have reached the backend


def build_job_spec(
    run: TrainingRun, role_arn: str | None, code_uri: str | None = None
) -> TrainingJobSpec:
    """The backend's view of a run's spec (``code_uri``: where its code bundle is stored)."""
    tags = {"stratus:project-id": str(run.project_id), "stratus:run-id": str(run.id)}
    return job_spec(job_name(run.id), run.spec, role_arn, code_uri, tags)


def job_spec(
    name: str,
    spec: dict[str, Any],
    role_arn: str | None,
    code_uri: str | None,
    tags: dict[str, str],
    model_uri: str | None = None,
) -> TrainingJobSpec:
    """A job's backend spec from a stored spec (a run's, or an evaluation's)."""
    return TrainingJobSpec(
        job_name=name,
        instance_type=spec.get("instance_type", "local"),
        instance_count=int(spec.get("instance_count", 1)),
        max_runtime_seconds=int(spec.get("max_runtime_seconds", 86400)),
        entrypoint=spec.get("entrypoint"),
        source_dir=spec.get("source_dir"),
        code_uri=code_uri,
        image=spec.get("image"),
        framework=spec.get("framework"),
        framework_version=spec.get("framework_version"),
        hyperparameters=dict(spec.get("hyperparameters", {})),
        input_channels=dict(spec.get("input_channels", {})),
        output_location=spec.get("output_location"),
        metric_definitions=tuple(
            MetricDefinition(m["name"], m["regex"]) for m in spec.get("metric_definitions", [])
        ),
        environment=dict(spec.get("environment", {})),
        volume_size_gb=int(spec.get("volume_size_gb", 30)),
        use_spot=bool(spec.get("use_spot", False)),
        max_wait_seconds=spec.get("max_wait_seconds"),
        # The project's role, never one from the spec (rows older than this rule may hold one).
        role_arn=role_arn,
        tags=tags,
        model_uri=model_uri,
    )


def prepare_submit(
    session: Session, run_id: uuid.UUID, settings: Settings, kind: JobKind | None = None
) -> SubmitPlan | None:
    """Claim a pending run for submission (pending -> submitting); None when nothing to do."""
    kind = kind or RUNS
    transition = kind.transition
    run = kind.rows.get(session, run_id)
    if run is None or run.status not in (S.PENDING, S.SUBMITTING):
        return None
    retry = run.status == S.SUBMITTING
    bundle_id = run.spec.get("code_bundle_id")
    code = bundles.code_uri(session, uuid.UUID(bundle_id), settings) if bundle_id else None
    if bundle_id and code is None:
        # Never fall back to code from the host: without its bundle the run cannot start.
        transition(
            session, run.id, S(run.status), S.FAILED, failure_reason="its code bundle is gone"
        )
        return None
    if not retry and not transition(session, run.id, S.PENDING, S.SUBMITTING, status_reason=None):
        return None
    role = projects_repo.backend_option(session, run.project_id, run.backend, "role_arn")
    if role and role not in settings.backends.sagemaker.role_allow_list and not retry:
        # Allowed when an owner chose it, since taken off the admin's list: never assume it.
        record_submit_failed(
            session, run.id, f"the project's role {role} is no longer allowed by the admin", kind
        )
        return None
    role = role or settings.backends.sagemaker.role_arn
    return SubmitPlan(run.id, run.backend, kind.build_spec(session, run, role, code), retry)


def record_submitted(
    session: Session, run_id: uuid.UUID, external_id: str, kind: JobKind | None = None
) -> bool:
    """The job exists: submitting -> running. True when a stop arrived meanwhile."""
    kind = kind or RUNS
    if kind.transition(session, run_id, S.SUBMITTING, S.RUNNING, external_id=external_id):
        return False
    # Stopped while submitting: keep the job id so the stop reaches the job. (A late duplicate
    # of a submit that already landed finds the run running: nothing to do.)
    return kind.rows.guarded_update(session, run_id, S.STOPPING, {"external_id": external_id})


def record_submit_failed(
    session: Session, run_id: uuid.UUID, reason: str, kind: JobKind | None = None
) -> None:
    """The backend refused the job for good: submitting -> failed (stopping -> stopped)."""
    kind = kind or RUNS
    if not kind.transition(session, run_id, S.SUBMITTING, S.FAILED, failure_reason=reason[:4000]):
        # A stop arrived while submitting: no job exists, so the stop is complete.
        kind.transition(session, run_id, S.STOPPING, S.STOPPED, status_reason=reason[:4000])


@dataclass(frozen=True)
class InFlightPage:
    """One page of a backend's in-flight runs: their last-seen states by job name, where the
    live metrics of the running ones continue, and the id to continue the walk after."""

    known: dict[str, tuple[uuid.UUID, JobState]]
    cursors: dict[uuid.UUID, str | None]
    last_id: uuid.UUID | None
    full: bool  # as many rows as asked for: there may be more


def in_flight_page(
    session: Session,
    backend: str,
    after: uuid.UUID | None,
    limit: int,
    kind: JobKind | None = None,
) -> InFlightPage:
    """The next ``limit`` in-flight runs of a backend after ``after`` (by id)."""
    kind = kind or RUNS
    runs = kind.list_in_flight(session, backend, limit, after)
    return InFlightPage(
        known={kind.job_name(r.id): (r.id, KNOWN_STATE[S(r.status)]) for r in runs},
        # Submitting runs too: a short job may end before a poll sees it running, and the poll
        # that sees it end must still pull every point it printed.
        cursors={
            r.id: r.metrics_cursor
            for r in runs
            if r.external_id is not None and r.status in (S.SUBMITTING, S.RUNNING, S.STOPPING)
        },
        last_id=runs[-1].id if runs else None,
        full=len(runs) >= limit,
    )


def apply_job_status(
    session: Session, run_id: uuid.UUID, job: JobStatus, kind: JobKind | None = None
) -> bool:
    """Move the run to what the backend reports; False when it had already moved on."""
    kind = kind or RUNS
    transition = kind.transition
    run = kind.rows.get(session, run_id)
    if run is None or run.status not in KNOWN_STATE:
        return False
    current = S(run.status)
    reported = {"secondary_status": job.secondary_status, "billable_seconds": job.billable_seconds}
    details: dict[str, Any] = {k: v for k, v in reported.items() if v is not None}
    if job.external_id and not run.external_id:
        details["external_id"] = job.external_id
    if job.state in (JobState.STARTING, JobState.RUNNING, JobState.STOPPING):
        if current == S.SUBMITTING:
            return transition(
                session,
                run.id,
                current,
                S.RUNNING,
                started_at=job.started_at or utcnow(),
                **details,
            )
        return bool(details) and kind.rows.guarded_update(session, run.id, current, details)
    if job.state == JobState.COMPLETED:
        return _complete(session, run, current, job, details, kind)
    if current in (S.SUBMITTING, S.RUNNING) and job.state == JobState.STOPPED:
        # Stopped by the backend itself (max runtime, max wait, its console): a stop always
        # passes through stopping in the state machine.
        transition(session, run.id, current, S.STOPPING)
        current = S.STOPPING
        details["status_reason"] = (
            f"stopped by the backend ({job.secondary_status or 'no reason given'})"
        )
    target = S.FAILED if job.state == JobState.FAILED else S.STOPPED
    if target == S.FAILED:
        details["failure_reason"] = (job.failure_reason or "the job failed")[:4000]
    return transition(
        session, run.id, current, target, ended_at=job.ended_at or utcnow(), **details
    )


def _complete(
    session: Session,
    run: Any,
    current: RunStatus,
    job: JobStatus,
    details: dict[str, Any],
    kind: JobKind,
) -> bool:
    final = {k: float(v) for k, v in job.final_metrics.items()}
    if kind.produces_model:
        details = {**details, "artifact_uri": job.artifact_uri}
    if not kind.transition(
        session,
        run.id,
        current,
        S.COMPLETED,
        final_metrics=final,
        ended_at=job.ended_at or utcnow(),
        **details,
    ):
        return False
    # Final metrics live on the run. A backend that scrapes live has already stored each value
    # at its step (the poll pulls a job's last points before applying its end), so only a
    # metric with no series at all (SageMaker's final metrics) gets its value as one point.
    missing = set(final) - metrics_repo.names_with_points(session, run.id, sorted(final))
    missing &= _admitted_names(session, run, missing) if missing else set()
    if missing:
        at = job.ended_at or utcnow()
        metrics_repo.add_many(
            session,
            run.project_id,
            kind.noun,
            run.id,
            [(name, None, at, final[name]) for name in sorted(missing)],
        )
    session.refresh(run)
    kind.on_complete(session, run)
    return True


def _register_model(session: Session, run: TrainingRun) -> None:
    if run.artifact_uri:
        model_versions.create_from_run(session, run)


def store_training_metrics(
    session: Session, run_id: uuid.UUID, page: MetricPage, kind: JobKind | None = None
) -> int:
    """Store live metric points and move the run's cursor past them, in one transaction."""
    kind = kind or RUNS
    run = kind.rows.get(session, run_id)
    if run is None:
        return 0
    points = page.points
    if points:
        allowed = _admitted_names(session, run, {p.name for p in points})
        points = [p for p in points if p.name in allowed]
        metrics_repo.add_many(
            session,
            run.project_id,
            kind.noun,
            run.id,
            [(p.name, p.step, p.timestamp, p.value) for p in points],
        )
    if page.next_cursor is not None:
        run.metrics_cursor = page.next_cursor
    return len(points)


def _admitted_names(session: Session, run: Any, names: Collection[str]) -> set[str]:
    """The names that fit the run's metric-name quota; the rest are dropped with a note."""
    allowed, dropped = quotas.admit_metric_names(session, run.id, names)
    if dropped:
        note = quotas.dropped_note(dropped)
        logger.warning("run %s: %s", run.id, note)
        run.status_reason = note
    return allowed


def job_statuses_to_apply(
    known: Mapping[str, tuple[uuid.UUID, JobState]], reported: Mapping[str, JobStatus]
) -> Sequence[tuple[uuid.UUID, JobStatus]]:
    """Pair each reported job with its run; foreign jobs are ignored."""
    return [(known[name][0], job) for name, job in reported.items() if name in known]


def _build_run_spec(
    session: Session,  # noqa: ARG001
    run: TrainingRun,
    role_arn: str | None,
    code_uri: str | None,
) -> TrainingJobSpec:
    return build_job_spec(run, role_arn, code_uri)


RUNS = JobKind(
    noun="run",
    produces_model=True,
    rows=repository.ROWS,
    transition=transition,
    job_name=job_name,
    list_in_flight=repository.list_in_flight,
    build_spec=_build_run_spec,
    on_complete=_register_model,
    stop_topic=outbox.RUN_STOP,
    submit=lambda backend, spec: backend.submit_training(spec),
    describe=lambda backend, known, since: backend.describe_jobs(known, since),
    stop=lambda backend, name: backend.stop_training(name),
    fetch_metrics=lambda backend, name, cursor: backend.fetch_training_metrics(name, cursor),
)
