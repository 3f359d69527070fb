"""The compute-backend contract: every backend (local, SageMaker, Vertex AI, Azure ML,
watsonx.ai) implements ``Backend``; tests/backends/contract/ holds them all to it.

Backends are called by workers outside any database transaction. Names passed in
(``job_name``, ``endpoint_name``) are derived from Stratus ids, which is what makes retries
safe: creating something that already exists under that name counts as done.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

HyperValue = str | int | float | bool


class BackendError(Exception):
    """A backend call failed; ``retryable`` says whether trying again later may help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class NotFoundError(BackendError):
    """The backend has no job or endpoint of that name."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class ModelError(BackendError):
    """The model answered with an error status; its status, body and type pass through."""

    def __init__(self, status_code: int, body: bytes, content_type: str) -> None:
        snippet = body[:300].decode("utf-8", errors="replace")
        super().__init__(f"the model answered {status_code}: {snippet}", retryable=False)
        self.status_code = status_code
        self.body = body
        self.content_type = content_type


class JobState(StrEnum):
    # Stratus does not know (e.g. a retried submit): any reported state differs from it.
    UNKNOWN = "unknown"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"


class EndpointState(StrEnum):
    CREATING = "creating"
    IN_SERVICE = "in_service"
    UPDATING = "updating"
    DELETING = "deleting"
    FAILED = "failed"
    GONE = "gone"


@dataclass(frozen=True)
class MetricDefinition:
    """A metric scraped from the job's log: the first group of ``regex``."""

    name: str
    regex: str


@dataclass(frozen=True)
class TrainingJobSpec:
    """One training job; ``job_name`` is derived from the run id."""

    job_name: str
    instance_type: str
    instance_count: int
    max_runtime_seconds: int
    entrypoint: str | None = None
    source_dir: str | None = None
    # A code bundle in the artifact store (file:// or s3:// .tar.gz), instead of source_dir.
    code_uri: str | None = None
    image: str | None = None
    framework: str | None = None
    framework_version: str | None = None
    hyperparameters: Mapping[str, HyperValue] = field(default_factory=dict)
    input_channels: Mapping[str, str] = field(default_factory=dict)
    output_location: str | None = None
    metric_definitions: Sequence[MetricDefinition] = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    volume_size_gb: int = 30
    use_spot: bool = False
    max_wait_seconds: int | None = None
    role_arn: str | None = None
    # Labels the backend attaches to the job where it can (project and run ids).
    tags: Mapping[str, str] = field(default_factory=dict)
    # An evaluation's model: unpacked into the job's ``model`` channel (SM_CHANNEL_MODEL).
    model_uri: str | None = None


@dataclass(frozen=True)
class JobStatus:
    """What the backend says about one job."""

    job_name: str
    external_id: str
    state: JobState
    message: str | None = None
    failure_reason: str | None = None
    artifact_uri: str | None = None
    final_metrics: Mapping[str, float] = field(default_factory=dict)
    started_at: datetime | None = None
    ended_at: datetime | None = None
    # A finer-grained phase such as SageMaker's SecondaryStatus ("Downloading", "Training").
    secondary_status: str | None = None
    billable_seconds: float | None = None


@dataclass(frozen=True)
class TrainingMetric:
    """One value a running job logged (scraped with its metric definitions)."""

    name: str
    value: float
    timestamp: datetime
    step: int | None = None


@dataclass(frozen=True)
class MetricPage:
    """Metrics logged after a cursor, and the cursor to continue from."""

    points: Sequence[TrainingMetric]
    next_cursor: str | None


@dataclass(frozen=True)
class EndpointSpec:
    """One serving endpoint; ``endpoint_name`` is derived from the deployment id."""

    endpoint_name: str
    artifact_uri: str
    instance_type: str
    instance_count: int
    framework: str | None = None
    image: str | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    role_arn: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EndpointStatus:
    endpoint_name: str
    external_id: str
    state: EndpointState
    current_instances: int
    failure_reason: str | None = None


@dataclass(frozen=True)
class Invocation:
    """A model's answer to one request."""

    body: bytes
    content_type: str
    latency_ms: float


# Names of endpoint metrics, the same for every backend (the optimizer reads these).
ENDPOINT_METRICS = (
    "invocations",  # requests in the period
    "invocations_per_instance",
    "latency_mean_ms",
    "latency_p95_ms",
    "errors_4xx",
    "errors_5xx",
    "bytes_in",
    "instances",  # instances serving during the period
)


@dataclass(frozen=True)
class MetricSample:
    """One endpoint metric (a name of ENDPOINT_METRICS) over the period ending at timestamp."""

    name: str
    timestamp: datetime
    value: float


@dataclass(frozen=True)
class LogPage:
    """Log lines in order, and the cursor to ask for the lines after them."""

    lines: Sequence[str]
    next_cursor: str | None


@runtime_checkable
class Backend(Protocol):
    """Where training jobs run and endpoints serve. Every method may raise BackendError."""

    name: str

    def submit_training(self, spec: TrainingJobSpec) -> str:
        """Start the job and return its external id; an existing job of that name is returned."""
        ...

    def describe_jobs(
        self, known: Mapping[str, JobState], changed_since: datetime | None = None
    ) -> Mapping[str, JobStatus]:
        """Full status of the jobs (named by ``known``'s keys) whose state differs from ``known``.

        Jobs that did not change are absent, and so are unknown names. ``changed_since`` lets
        a backend with a "list what changed" call (SageMaker's ListTrainingJobs with
        LastModifiedTimeAfter) skip everything older, so a poll costs a few list pages plus
        one describe per job whose state moved, not one describe per job.
        """
        ...

    def fetch_training_metrics(self, job_name: str, cursor: str | None) -> MetricPage:
        """Metric values the job logged after ``cursor`` (None: from the start), live."""
        ...

    def stop_training(self, job_name: str) -> None:
        """Ask the job to stop; stopping a finished or unknown job is not an error."""
        ...

    def create_endpoint(self, spec: EndpointSpec) -> EndpointStatus:
        """Start serving; an existing endpoint of that name is returned as it is."""
        ...

    def update_capacity(self, endpoint_name: str, instance_count: int) -> EndpointStatus:
        """Set the absolute number of instances behind the endpoint."""
        ...

    def delete_endpoint(self, endpoint_name: str) -> None:
        """Stop serving and release the instances; deleting a missing endpoint is not an error."""
        ...

    def describe_endpoints(self, endpoint_names: Sequence[str]) -> Mapping[str, EndpointStatus]:
        """The status of each named endpoint; one that does not exist is reported GONE."""
        ...

    def invoke(self, endpoint_name: str, body: bytes, content_type: str) -> Invocation:
        """Send one request to the endpoint's model."""
        ...

    def fetch_endpoint_metrics(
        self, endpoint_name: str, start: datetime, end: datetime, period_s: int
    ) -> Sequence[MetricSample]:
        """Invocations, latency and error metrics of the endpoint over ``[start, end)``."""
        ...

    def fetch_logs(self, job_name: str, cursor: str | None, limit: int) -> LogPage:
        """Up to ``limit`` log lines of the job after ``cursor`` (None: from the start)."""
        ...


@runtime_checkable
class EvaluationBackend(Protocol):
    """A backend that also runs evaluation jobs: batch jobs with a model version mounted
    (``spec.model_uri``) next to test channels. SageMaker runs them as Processing jobs.
    Job names are unique across training and evaluation jobs (``naming``), so logs of either
    come from ``Backend.fetch_logs``."""

    def submit_evaluation(self, spec: TrainingJobSpec) -> str:
        """Start the job and return its external id; an existing job of that name is returned."""
        ...

    def describe_evaluations(
        self, known: Mapping[str, JobState], changed_since: datetime | None = None
    ) -> Mapping[str, JobStatus]:
        """As ``Backend.describe_jobs``, for evaluation jobs."""
        ...

    def fetch_evaluation_metrics(self, job_name: str, cursor: str | None) -> MetricPage:
        """Metric values the job logged after ``cursor``, scraped with its definitions."""
        ...

    def stop_evaluation(self, job_name: str) -> None:
        """Ask the job to stop; stopping a finished or unknown job is not an error."""
        ...


def evaluation_backend(backend: Backend) -> EvaluationBackend:
    """``backend`` as one that runs evaluations, or a permanent error saying it does not."""
    if not isinstance(backend, EvaluationBackend):
        raise BackendError(f"the {backend.name} backend does not run evaluations", retryable=False)
    return backend


@runtime_checkable
class RollingBackend(Protocol):
    """A backend that can switch an endpoint to another model without downtime."""

    def update_endpoint_model(self, spec: EndpointSpec) -> EndpointStatus:
        """Serve ``spec.artifact_uri`` at ``spec.instance_count`` from now on: new instances
        become ready before the old ones drain. Asking again for the model it serves (or is
        rolling to) changes nothing."""
        ...


def rolling_backend(backend: Backend) -> RollingBackend:
    """``backend`` as one that rolls endpoints to new models, or a permanent error."""
    if not isinstance(backend, RollingBackend):
        raise BackendError(
            f"the {backend.name} backend cannot switch an endpoint's model", retryable=False
        )
    return backend


@runtime_checkable
class AsyncInvoker(Protocol):
    """A backend that can also serve a request on the caller's event loop (no thread)."""

    async def invoke_async(self, endpoint_name: str, body: bytes, content_type: str) -> Invocation:
        """``Backend.invoke``, awaited."""
        ...
