"""``LocalBackend``: the Backend Protocol with processes on this host, state in files.

Training jobs run under a detached supervisor process each, endpoints under a detached
controller process each; both keep everything they know in ``work_dir``. So the worker that
submits, the worker that polls and the API process that invokes can be different processes,
and any of them can restart without losing a job or an endpoint.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from app.backends.base import (
    BackendError,
    EndpointSpec,
    EndpointStatus,
    Invocation,
    JobState,
    JobStatus,
    LogPage,
    MetricPage,
    MetricSample,
    TrainingJobSpec,
)
from app.backends.local import sandbox, stats
from app.backends.local.endpoints import LocalEndpoints
from app.backends.local.jobs import LocalJobs
from app.backends.local.routing import RECHECK_S, Router
from app.hostpaths import settings_roots
from app.settings import Settings


class LocalBackend:
    """Trains and serves on this host (see the module docstring)."""

    name = "local"

    def __init__(self, settings: Settings) -> None:
        local = settings.backends.local
        # Absolute: the supervisor, controller and replicas run in directories of their own.
        self.work_dir = Path(local.work_dir or settings.data_dir / "local").resolve()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        roots = settings_roots(settings)
        # Decided here, where the settings are; supervisors and controllers read it from files.
        self.sandbox = sandbox.spec_for(settings, self.work_dir)
        if self.sandbox is not None:
            sandbox.lock_down(self.sandbox)
        self.jobs = LocalJobs(self.work_dir, settings, roots, self.sandbox)
        self.endpoints = LocalEndpoints(self.work_dir, local, roots, self.sandbox)
        self._live_dirs: dict[str, tuple[float, Path]] = {}  # endpoint: (checked at, its dir)
        self.router = Router(local.invoke_timeout_s, settings.serving.replica_max_connections)

    def close(self) -> None:
        """Release the router's connections."""
        self.router.close()

    # --- training ---------------------------------------------------------------------------

    def submit_training(self, spec: TrainingJobSpec) -> str:
        """Start the job under a supervisor; an existing job of that name is returned."""
        return self.jobs.submit(spec)

    def describe_jobs(
        self, known: Mapping[str, JobState], changed_since: datetime | None = None
    ) -> Mapping[str, JobStatus]:
        """Jobs whose state differs from ``known``, read from their files."""
        del changed_since  # reading a few small files per job is cheap: nothing to skip

        return self.jobs.describe(known)

    def fetch_training_metrics(self, job_name: str, cursor: str | None) -> MetricPage:
        """Metrics scraped after ``cursor``; the next cursor is always set."""
        return self.jobs.metrics(job_name, cursor)

    def stop_training(self, job_name: str) -> None:
        """Ask the job's supervisor to stop it (SIGTERM, grace, SIGKILL)."""
        self.jobs.stop(job_name)

    def fetch_logs(self, job_name: str, cursor: str | None, limit: int) -> LogPage:
        """Log lines after ``cursor``; ``next_cursor`` is None once an ended job is read out."""
        return self.jobs.logs(job_name, cursor, limit)

    # --- evaluations: the same jobs, with the model unpacked into their ``model`` channel ---

    def submit_evaluation(self, spec: TrainingJobSpec) -> str:
        """Start the evaluation job; an existing job of that name is returned."""
        return self.jobs.submit(spec)

    def describe_evaluations(
        self, known: Mapping[str, JobState], changed_since: datetime | None = None
    ) -> Mapping[str, JobStatus]:
        """Evaluation jobs whose state differs from ``known``."""
        return self.describe_jobs(known, changed_since)

    def fetch_evaluation_metrics(self, job_name: str, cursor: str | None) -> MetricPage:
        """Metrics scraped after ``cursor``."""
        return self.jobs.metrics(job_name, cursor)

    def stop_evaluation(self, job_name: str) -> None:
        """Ask the job's supervisor to stop it."""
        self.jobs.stop(job_name)

    # --- serving ----------------------------------------------------------------------------

    def create_endpoint(self, spec: EndpointSpec) -> EndpointStatus:
        """Unpack the model and start the endpoint's controller."""
        return self.endpoints.create(spec)

    def update_capacity(self, endpoint_name: str, instance_count: int) -> EndpointStatus:
        """Set the desired replica count."""
        return self.endpoints.update(endpoint_name, instance_count)

    def update_endpoint_model(self, spec: EndpointSpec) -> EndpointStatus:
        """Roll the endpoint's replicas over to another model (new ready before old drain)."""
        return self.endpoints.update_model(spec)

    def delete_endpoint(self, endpoint_name: str) -> None:
        """Drain and stop the endpoint's replicas and remove its files."""
        self.endpoints.delete(endpoint_name)

    def describe_endpoints(self, endpoint_names: Sequence[str]) -> Mapping[str, EndpointStatus]:
        """Status of each known endpoint (a deleted one is ``gone``)."""
        return self.endpoints.describe(endpoint_names)

    def invoke(self, endpoint_name: str, body: bytes, content_type: str) -> Invocation:
        """One request to a ready replica; a model's 4xx/5xx raises ``ModelError``."""
        endpoint_dir = self.endpoints.serving_dir(endpoint_name)
        return self.router.invoke(endpoint_name, endpoint_dir, body, content_type)

    async def invoke_async(self, endpoint_name: str, body: bytes, content_type: str) -> Invocation:
        """``invoke`` on the running event loop, for the API's invocation route."""
        now = time.monotonic()
        checked = self._live_dirs.get(endpoint_name)
        if checked is None or now - checked[0] >= RECHECK_S:  # a few stat()s, not per request
            checked = (now, self.endpoints.serving_dir(endpoint_name))
            self._live_dirs[endpoint_name] = checked
        return await self.router.invoke_async(endpoint_name, checked[1], body, content_type)

    def fetch_endpoint_metrics(
        self, endpoint_name: str, start: datetime, end: datetime, period_s: int
    ) -> Sequence[MetricSample]:
        """ENDPOINT_METRICS per whole period of ``[start, end)``; none for unknown endpoints."""
        if period_s <= 0:
            raise BackendError("period_s must be positive", retryable=False)
        endpoint_dir = self.endpoints.endpoint_dir(endpoint_name)
        if not endpoint_dir.exists():
            return []
        self.router.recorder.flush()  # this process's requests count at once
        return stats.aggregate(endpoint_dir, start, end, period_s)


if TYPE_CHECKING:
    from app.backends.base import Backend, EvaluationBackend, RollingBackend

    _conforms: type[Backend] = LocalBackend
    _evaluates: type[EvaluationBackend] = LocalBackend
    _rolls: type[RollingBackend] = LocalBackend
