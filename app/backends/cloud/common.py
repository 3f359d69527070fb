"""The parts of a REST cloud backend that do not depend on the cloud: building its client,
waiting on a quick long-running operation, labels, and the operations not wired up yet."""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import httpx

from app.backends.base import (
    BackendError,
    JobState,
    JobStatus,
    LogPage,
    MetricPage,
    MetricSample,
    TrainingJobSpec,
)
from app.backends.cloud.http import CloudHttp, TokenProvider
from app.backends.cloud.tokens import StaticToken
from app.backends.ratelimit import TokenBucket, bucket_for
from app.settings import CloudApiSettings, Settings

T = TypeVar("T")
_LABEL_CHARS = re.compile(r"[^a-z0-9_-]")


def build_http(
    name: str,
    settings: Settings,
    config: CloudApiSettings,
    default_url: str,
    tokens: Callable[[], TokenProvider],
    *,
    limiter: TokenBucket | None = None,
    transport: httpx.BaseTransport | None = None,
) -> CloudHttp:
    """The client of a cloud backend; a static token in the settings wins over ``tokens``."""
    static = config.access_token.get_secret_value() if config.access_token else None
    base_url = config.base_url or default_url
    return CloudHttp(
        name,
        base_url,
        StaticToken(static) if static else tokens(),
        limiter
        or bucket_for(
            settings.effective_broker_url,
            f"stratus:ratelimit:{name}:{base_url}",
            config.api_rate_per_s,
            config.api_burst,
        ),
        timeout_s=config.request_timeout_s,
        max_attempts=config.max_attempts,
        transport=transport,
    )


def label_value(text: str) -> str:
    """``text`` as a label key or value the clouds accept: ``[a-z0-9_-]``, at most 63 chars."""
    return _LABEL_CHARS.sub("-", text.lower())[:63]


def labels_of(tags: Mapping[str, str]) -> dict[str, str]:
    """Stratus tags (``stratus:project-id``) as cloud labels (``stratus-project-id``)."""
    return {label_value(k): label_value(v) for k, v in tags.items() if k and v}


def wait_until(
    check: Callable[[], T | None],
    timeout_s: float,
    what: str,
    every_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``check`` until it returns something; a retryable BackendError at the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found is not None:
            return found
        if time.monotonic() >= deadline:
            raise BackendError(f"{what} not done after {timeout_s:.0f} s", retryable=True)
        sleep(min(every_s, max(0.0, deadline - time.monotonic())))
        every_s = min(every_s * 1.5, 10.0)


class RestBackendBase(ABC):
    """Construction from the settings, and the operations not wired to the cloud yet (live
    metrics and logs: the cloud's logging and monitoring APIs are not read)."""

    name: str
    http: CloudHttp

    def __init__(
        self,
        settings: Settings,
        *,
        limiter: TokenBucket | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        config = self._configure(settings)
        problem = config.unconfigured(self.name)
        if problem is not None:
            raise BackendError(problem, retryable=False)
        self.http = build_http(
            self.name,
            settings,
            config,
            self._default_url(),
            self._tokens,
            limiter=limiter,
            transport=transport,
        )

    @abstractmethod
    def _configure(self, settings: Settings) -> CloudApiSettings:
        """Keep what the backend needs from ``settings``; return its settings group."""

    @abstractmethod
    def _default_url(self) -> str:
        """The cloud's API root when no base URL is set."""

    @abstractmethod
    def _tokens(self) -> TokenProvider:
        """The credential exchange of the cloud (used when no static token is set)."""

    def fetch_training_metrics(self, job_name: str, cursor: str | None) -> MetricPage:  # noqa: ARG002
        """Final metrics only; live values would come from the cloud's logging service."""
        return MetricPage(points=(), next_cursor=cursor)

    def fetch_logs(self, job_name: str, cursor: str | None, limit: int) -> LogPage:  # noqa: ARG002
        """Logs stay in the cloud's logging service (not read by this backend)."""
        return LogPage(lines=(), next_cursor=cursor)

    def fetch_endpoint_metrics(
        self,
        endpoint_name: str,  # noqa: ARG002
        start: datetime,  # noqa: ARG002
        end: datetime,  # noqa: ARG002
        period_s: int,  # noqa: ARG002
    ) -> Sequence[MetricSample]:
        """Endpoint metrics stay in the cloud's monitoring service (the optimizer sees none)."""
        return ()

    def close(self) -> None:
        self.http.close()


class LabelledJobs(ABC):
    """Jobs whose id the cloud picks, found again by a label that carries the Stratus name.

    Exactly once: a submit first looks for the label, so one that died after the cloud accepted
    finds its job; two racing workers both see both jobs afterwards and agree on the oldest, so
    the other is cancelled and one job runs. A poll lists the in-flight jobs (by state and
    label) and looks up, one call each, the known jobs that left that list.
    """

    cloud: str

    @abstractmethod
    def _named(self, job_name: str) -> list[Mapping[str, Any]]:
        """Every job carrying ``job_name``'s label, the one to keep (the oldest) first."""

    @abstractmethod
    def _create(self, spec: TrainingJobSpec) -> None:
        """Ask the cloud for the job."""

    @abstractmethod
    def _cancel(self, job: Mapping[str, Any]) -> None:
        """Cancel the job if it is still starting or running."""

    @abstractmethod
    def _in_flight(self, known: Mapping[str, JobState]) -> Iterable[tuple[str, Mapping[str, Any]]]:
        """(Stratus name, job) of the jobs the cloud lists as in flight."""

    @abstractmethod
    def _job_status(self, job_name: str, job: Mapping[str, Any]) -> JobStatus:
        """The job as Stratus sees it."""

    def _external_id(self, job: Mapping[str, Any]) -> str:
        return str(job["name"])

    def submit_training(self, spec: TrainingJobSpec) -> str:
        """Create the job unless one carries its label; duplicates of a race are cancelled."""
        existing = self._named(spec.job_name)
        if not existing:
            self._create(spec)
            existing = self._named(spec.job_name)
        if not existing:  # lists can lag the create: the next attempt finds it
            raise BackendError(f"the new {self.cloud} job is not listed yet", retryable=True)
        keep, *extra = existing
        for job in extra:
            self._cancel(job)
        return self._external_id(keep)

    def describe_jobs(
        self,
        known: Mapping[str, JobState],
        changed_since: datetime | None = None,  # noqa: ARG002 - these lists have no such filter
    ) -> Mapping[str, JobStatus]:
        """The known jobs whose state differs: listed in flight, or looked up once they left."""
        if not known:
            return {}
        seen: dict[str, Mapping[str, Any]] = {}
        for name, job in self._in_flight(known):
            if name in known and name not in seen:
                seen[name] = job
        for name in known.keys() - seen.keys():
            found = self._named(name)
            if found:
                seen[name] = found[0]
        statuses = {name: self._job_status(name, job) for name, job in seen.items()}
        return {name: s for name, s in statuses.items() if s.state != known[name]}

    def stop_training(self, job_name: str) -> None:
        """Cancel the job; a finished or unknown job is left as it is."""
        for job in self._named(job_name):
            self._cancel(job)
