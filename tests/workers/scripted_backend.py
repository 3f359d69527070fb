"""A backend whose jobs and endpoints the test moves by hand: it exercises Stratus' side of
the Backend contract (exactly-once submission, state application, reconciliation) where the
real backends' own timing would make outcomes nondeterministic. The real backends have their
own suites (tests/backends/)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from app.backends.base import (
    BackendError,
    EndpointSpec,
    EndpointState,
    EndpointStatus,
    Invocation,
    JobState,
    JobStatus,
    LogPage,
    MetricPage,
    MetricSample,
    TrainingJobSpec,
    TrainingMetric,
)


@dataclass
class ScriptedBackend:
    name: str = "local"
    jobs: dict[str, JobStatus] = field(default_factory=dict)
    specs: dict[str, TrainingJobSpec] = field(default_factory=dict)
    endpoints: dict[str, EndpointStatus] = field(default_factory=dict)
    metrics: dict[str, list[TrainingMetric]] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    fail_next: dict[str, BackendError] = field(default_factory=dict)

    def _call(self, op: str) -> None:
        self.calls[op] += 1
        error = self.fail_next.pop(op, None)
        if error is not None:
            raise error

    # --- the test moves things --------------------------------------------------------

    def set_job(self, job_name: str, state: JobState, **fields: object) -> None:
        self.jobs[job_name] = replace(self.jobs[job_name], state=state, **fields)  # type: ignore[arg-type]

    def set_endpoint(self, name: str, state: EndpointState, current: int | None = None) -> None:
        ep = self.endpoints[name]
        self.endpoints[name] = replace(
            ep, state=state, current_instances=ep.current_instances if current is None else current
        )

    # --- the Backend protocol ---------------------------------------------------------

    def submit_training(self, spec: TrainingJobSpec) -> str:
        self._call("submit_training")
        if spec.job_name not in self.jobs:
            self.specs[spec.job_name] = spec
            self.jobs[spec.job_name] = JobStatus(
                job_name=spec.job_name, external_id=f"job/{spec.job_name}", state=JobState.STARTING
            )
        return self.jobs[spec.job_name].external_id

    def describe_jobs(
        self, known: Mapping[str, JobState], changed_since: datetime | None = None
    ) -> Mapping[str, JobStatus]:
        self._call("describe_jobs")
        return {n: j for n, j in self.jobs.items() if n in known and known[n] != j.state}

    def fetch_training_metrics(self, job_name: str, cursor: str | None) -> MetricPage:
        self._call("fetch_training_metrics")
        points = self.metrics.get(job_name, [])
        start = int(cursor or 0)
        return MetricPage(points=points[start:], next_cursor=str(len(points)))

    def stop_training(self, job_name: str) -> None:
        self._call("stop_training")
        if job_name in self.jobs and self.jobs[job_name].state == JobState.RUNNING:
            self.set_job(job_name, JobState.STOPPING)

    # Evaluation jobs share the job table: their names never clash with training jobs'.

    def submit_evaluation(self, spec: TrainingJobSpec) -> str:
        return self.submit_training(spec)

    def describe_evaluations(
        self, known: Mapping[str, JobState], changed_since: datetime | None = None
    ) -> Mapping[str, JobStatus]:
        return self.describe_jobs(known, changed_since)

    def fetch_evaluation_metrics(self, job_name: str, cursor: str | None) -> MetricPage:
        return self.fetch_training_metrics(job_name, cursor)

    def stop_evaluation(self, job_name: str) -> None:
        self.stop_training(job_name)

    def update_endpoint_model(self, spec: EndpointSpec) -> EndpointStatus:
        self._call("update_endpoint_model")
        self.calls[f"model={spec.artifact_uri}"] += 1
        self.set_endpoint(spec.endpoint_name, EndpointState.UPDATING)
        return self.endpoints[spec.endpoint_name]

    def create_endpoint(self, spec: EndpointSpec) -> EndpointStatus:
        self._call("create_endpoint")
        if spec.endpoint_name not in self.endpoints:
            self.endpoints[spec.endpoint_name] = EndpointStatus(
                spec.endpoint_name, f"ep/{spec.endpoint_name}", EndpointState.CREATING, 0
            )
        return self.endpoints[spec.endpoint_name]

    def update_capacity(self, endpoint_name: str, instance_count: int) -> EndpointStatus:
        self._call("update_capacity")
        self.calls[f"capacity={instance_count}"] += 1
        self.set_endpoint(endpoint_name, EndpointState.UPDATING)
        return self.endpoints[endpoint_name]

    def delete_endpoint(self, endpoint_name: str) -> None:
        self._call("delete_endpoint")
        self.endpoints.pop(endpoint_name, None)

    def describe_endpoints(self, endpoint_names: Sequence[str]) -> Mapping[str, EndpointStatus]:
        self._call("describe_endpoints")
        gone = EndpointState.GONE
        return {n: self.endpoints.get(n, EndpointStatus(n, "", gone, 0)) for n in endpoint_names}

    def invoke(self, endpoint_name: str, body: bytes, content_type: str) -> Invocation:
        self._call("invoke")
        return Invocation(body=body, content_type=content_type, latency_ms=1.0)

    def fetch_endpoint_metrics(
        self, endpoint_name: str, start: datetime, end: datetime, period_s: int
    ) -> Sequence[MetricSample]:
        self._call("fetch_endpoint_metrics")
        return [MetricSample("invocations", end, 42.0)]

    def fetch_logs(self, job_name: str, cursor: str | None, limit: int) -> LogPage:
        self._call("fetch_logs")
        return LogPage(lines=[f"{job_name} line {i}" for i in range(3)], next_cursor="3")
