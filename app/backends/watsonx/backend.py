"""The watsonx.ai backend: trainings and online deployments in one deployment space.

Training ids are chosen by watsonx, so each training carries a tag with its Stratus name and a
submit finds it by that tag (``submit_once``). A poll lists the space's running Stratus
trainings by tag and state; a known job missing from that list is looked up by its tag.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from app.backends.base import JobState, JobStatus, TrainingJobSpec
from app.backends.cloud.common import LabelledJobs, RestBackendBase
from app.backends.cloud.http import TokenProvider
from app.backends.cloud.tokens import IbmIamToken
from app.backends.watsonx import shapes
from app.backends.watsonx.serving import WatsonxServing
from app.settings import Settings, WatsonxSettings


class WatsonxBackend(WatsonxServing, LabelledJobs, RestBackendBase):
    """Training jobs and endpoints on IBM watsonx.ai."""

    name = "watsonx"
    cloud = "watsonx"

    def _configure(self, settings: Settings) -> WatsonxSettings:
        self.config = settings.backends.watsonx
        self.space_id = str(self.config.space_id)
        self.scope = {"version": self.config.version, "space_id": self.space_id}
        return self.config

    def _default_url(self) -> str:
        return "https://us-south.ml.cloud.ibm.com"

    def _tokens(self) -> TokenProvider:
        key = self.config.api_key.get_secret_value() if self.config.api_key else ""
        return IbmIamToken(self.config.iam_url, key)

    def _list(self, path: str, **filters: str) -> list[Mapping[str, Any]]:
        """Every resource of a list call, oldest first, following ``next.href``'s token."""
        params: dict[str, Any] = {**self.scope, "limit": min(self.config.page_size, 200)}
        params.update(filters)
        found: list[Mapping[str, Any]] = []
        while True:
            page = self.http.must("GET", path, params=params)
            found.extend(page.get("resources", []))
            start = httpx.URL(str(page.get("next", {}).get("href", ""))).params.get("start")
            if not start:
                return sorted(
                    found, key=lambda r: (r["metadata"].get("created_at", ""), r["metadata"]["id"])
                )
            params["start"] = start

    def _named(self, job_name: str) -> list[Mapping[str, Any]]:
        return self._list("/ml/v4/trainings", **{"tag.value": shapes.job_tag(job_name)})

    def _create(self, spec: TrainingJobSpec) -> None:
        body = shapes.training(spec, self.space_id, self.config.software_spec)
        self.http.must("POST", "/ml/v4/trainings", params=self.scope, json=body)

    def _external_id(self, job: Mapping[str, Any]) -> str:
        return str(job["metadata"]["id"])

    def _cancel(self, job: Mapping[str, Any]) -> None:
        """DELETE without hard_delete: cancels, keeping the record."""
        if shapes.job_state(job) in (JobState.STARTING, JobState.RUNNING):
            self.http.call(
                "DELETE",
                f"/ml/v4/trainings/{job['metadata']['id']}",
                params={**self.scope, "hard_delete": "false"},
                tolerate=frozenset({400, 404}),
            )

    def _in_flight(
        self,
        known: Mapping[str, JobState],  # noqa: ARG002 - trainings list by tag and state only
    ) -> Iterator[tuple[str, Mapping[str, Any]]]:
        """The space's running Stratus trainings (queued ones are looked up by their tag)."""
        running = {"tag.value": shapes.MANAGED, "state": "running"}
        for job in self._list("/ml/v4/trainings", **running):
            yield str(job["metadata"].get("name", "")), job

    def _job_status(self, job_name: str, job: Mapping[str, Any]) -> JobStatus:
        return shapes.job_status(job_name, job)
