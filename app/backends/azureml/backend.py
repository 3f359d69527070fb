"""The Azure ML backend: command jobs and managed online endpoints over ARM REST.

Job names are Azure ids (``PUT …/jobs/{name}``), so a resubmit finds the job it made. Azure's job
list filters by tag but not by time or state, so every job carries an in-flight tag that
Stratus takes off once it has seen the job end: the poll lists only jobs still in flight.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from app.backends.azureml import shapes
from app.backends.azureml.serving import AzureMLServing
from app.backends.base import BackendError, JobState, JobStatus, TrainingJobSpec
from app.backends.cloud.common import RestBackendBase
from app.backends.cloud.http import TokenProvider
from app.backends.cloud.tokens import AzureAdToken
from app.settings import AzureMLSettings, Settings

logger = logging.getLogger(__name__)
MISSING = frozenset({404})


class AzureMLBackend(AzureMLServing, RestBackendBase):
    """Training jobs and endpoints in one Azure ML workspace."""

    name = "azureml"

    def _configure(self, settings: Settings) -> AzureMLSettings:
        c = self.config = settings.backends.azureml
        self.workspace = (
            f"/subscriptions/{c.subscription_id}/resourceGroups/{c.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{c.workspace}"
        )
        self.version = {"api-version": c.api_version}
        return c

    def _default_url(self) -> str:
        return "https://management.azure.com"

    def _tokens(self) -> TokenProvider:
        c = self.config
        secret = c.client_secret.get_secret_value() if c.client_secret else ""
        return AzureAdToken(c.authority_url, c.tenant_id or "", c.client_id or "", secret)

    def _job(self, job_name: str) -> dict[str, Any] | None:
        answer = self.http.call(
            "GET", f"{self.workspace}/jobs/{job_name}", params=self.version, tolerate=MISSING
        )
        return None if answer is None else answer.body

    def submit_training(self, spec: TrainingJobSpec) -> str:
        """PUT the job under its Stratus name; 409 (it exists) counts as this submission."""
        compute = f"{self.workspace}/computes/{self.config.compute}"
        body = shapes.command_job(spec, compute, self.config.environment)
        answer = self.http.call(
            "PUT",
            f"{self.workspace}/jobs/{spec.job_name}",
            params=self.version,
            json=body,
            tolerate=frozenset({409}),
        )
        job = answer.body if answer is not None else self._job(spec.job_name)
        if job is None:
            raise BackendError(
                f"job {spec.job_name} refused as a duplicate, yet missing", retryable=True
            )
        return str(job["id"])

    def _in_flight(self) -> list[dict[str, Any]]:
        jobs: list[dict[str, Any]] = []
        params: dict[str, Any] | None = {**self.version, "tag": shapes.IN_FLIGHT_TAG}
        url = f"{self.workspace}/jobs"
        while True:
            page = self.http.must("GET", url, params=params)
            jobs.extend(page.get("value", []))
            if not page.get("nextLink"):
                return jobs
            url, params = str(page["nextLink"]), None  # the link carries its own query

    def describe_jobs(
        self,
        known: Mapping[str, JobState],
        changed_since: datetime | None = None,  # noqa: ARG002 - Azure's list has no time filter
    ) -> Mapping[str, JobStatus]:
        """List the jobs still tagged in flight; GET the known ones no longer listed."""
        if not known:
            return {}
        seen = {str(job["name"]): job for job in self._in_flight() if job.get("name") in known}
        for name in known.keys() - seen.keys():
            job = self._job(name)
            if job is not None:
                seen[name] = job
        changed = {}
        for name, job in seen.items():
            state = shapes.job_state(job)
            if state in shapes.ENDED and shapes.IN_FLIGHT_TAG in _tags(job):
                self._untag(job)
            if state != known[name]:
                changed[name] = shapes.job_status(job)
        return changed

    def _untag(self, job: Mapping[str, Any]) -> None:
        """Best effort: a job left tagged is only listed again, never missed."""
        try:
            self.http.call(
                "PUT",
                f"{self.workspace}/jobs/{job['name']}",
                params=self.version,
                json=shapes.untagged(job),
            )
        except BackendError as exc:
            logger.warning("could not untag finished job %s: %s", job.get("name"), exc)

    def stop_training(self, job_name: str) -> None:
        """POST …/cancel; a finished or unknown job is left as it is."""
        job = self._job(job_name)
        if job is None or shapes.job_state(job) in shapes.ENDED | {JobState.STOPPING}:
            return
        self.http.call(
            "POST",
            f"{self.workspace}/jobs/{job_name}/cancel",
            params=self.version,
            tolerate=frozenset({400, 404, 409}),
        )


def _tags(job: Mapping[str, Any]) -> Mapping[str, str]:
    tags: Mapping[str, str] = job.get("properties", {}).get("tags") or {}
    return tags
