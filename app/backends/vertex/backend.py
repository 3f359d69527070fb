"""The Vertex AI backend: custom jobs and endpoints over the aiplatform v1 REST API.

A custom job's id is chosen by Vertex, so a job is found again by its ``stratus-job`` label:
a submit first looks for the label, and after creating looks again; if two workers created one
each, every worker keeps the oldest and cancels the others, so one job runs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from app.backends import naming
from app.backends.base import JobState, JobStatus, TrainingJobSpec
from app.backends.cloud.common import LabelledJobs, RestBackendBase
from app.backends.cloud.http import TokenProvider
from app.backends.cloud.tokens import GoogleServiceAccountToken
from app.backends.vertex import shapes
from app.backends.vertex.serving import VertexServing
from app.settings import Settings, VertexSettings


class VertexBackend(VertexServing, LabelledJobs, RestBackendBase):
    """Training jobs and endpoints on Google Cloud Vertex AI."""

    name = "vertex"
    cloud = "Vertex AI"

    def _configure(self, settings: Settings) -> VertexSettings:
        self.config = settings.backends.vertex
        self.parent = f"projects/{self.config.project}/locations/{self.config.location}"
        return self.config

    def _default_url(self) -> str:
        return f"https://{self.config.location}-aiplatform.googleapis.com/v1"

    def _tokens(self) -> TokenProvider:
        assert self.config.credentials_file is not None  # noqa: S101 - missing() checked it
        return GoogleServiceAccountToken(self.config.credentials_file, self.config.token_url)

    def _jobs(self, filter_: str, page_token: str | None = None) -> dict[str, Any]:
        params = {"filter": filter_, "pageSize": self.config.page_size}
        if page_token:
            params["pageToken"] = page_token
        return self.http.must("GET", f"/{self.parent}/customJobs", params=params)

    def _named(self, job_name: str) -> list[Mapping[str, Any]]:
        """Every job carrying ``job_name``'s label, the one to keep first."""
        jobs: list[Mapping[str, Any]] = []
        token = None
        while True:
            page = self._jobs(shapes.name_filter(job_name), token)
            jobs.extend(page.get("customJobs", []))
            token = page.get("nextPageToken")
            if not token:
                return shapes.oldest_first(jobs)

    def _create(self, spec: TrainingJobSpec) -> None:
        body = shapes.custom_job(spec, self.config.service_account)
        self.http.must("POST", f"/{self.parent}/customJobs", json=body)

    def _cancel(self, job: Mapping[str, Any]) -> None:
        if shapes.job_state(job) in (JobState.STARTING, JobState.RUNNING):
            self.http.call("POST", f"/{job['name']}:cancel", json={}, tolerate=_GONE_OR_DONE)

    def _in_flight(self, known: Mapping[str, JobState]) -> Iterator[tuple[str, Mapping[str, Any]]]:
        """Stratus jobs queued, pending, running or cancelling, created after the oldest known."""
        active = shapes.active_filter(naming.oldest_creation(list(known)))
        token = None
        while True:
            page = self._jobs(active, token)
            for job in page.get("customJobs", []):
                yield str(job.get("displayName", "")), job
            token = page.get("nextPageToken")
            if not token:
                return

    def _job_status(self, job_name: str, job: Mapping[str, Any]) -> JobStatus:
        return shapes.job_status(job_name, job)


# 400 FAILED_PRECONDITION: the job finished in the meantime; 404: it is gone.
_GONE_OR_DONE = frozenset({400, 404})
