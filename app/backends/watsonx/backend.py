"""The watsonx.ai backend: trainings and online deployments in one deployment space.

Training ids are chosen by watsonx, so each training carries a tag with its Stratus name and a
submit finds it by that tag (``submit_once``). A poll lists the space's running Stratus
trainings by tag and state; a known job missing from that list is looked up by its tag.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx

from app.backends.base import JobState, JobStatus, TrainingJobSpec
from app.backends.cloud.common import RestBackendBase, submit_once
from app.backends.cloud.http import TokenProvider
from app.backends.cloud.tokens import IbmIamToken
from app.backends.watsonx import shapes
from app.backends.watsonx.serving import WatsonxServing
from app.settings import Settings, WatsonxSettings


class WatsonxBackend(WatsonxServing, RestBackendBase):
    """Training jobs and endpoints on IBM watsonx.ai."""

    name = "watsonx"

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

    def submit_training(self, spec: TrainingJobSpec) -> str:
        """POST /ml/v4/trainings unless a training with the job's tag exists."""
        body = shapes.training(spec, self.space_id, self.config.software_spec)
        keep = submit_once(
            lambda: self._named(spec.job_name),
            lambda: self.http.must("POST", "/ml/v4/trainings", params=self.scope, json=body),
            self._cancel,
            "watsonx",
        )
        return str(keep["metadata"]["id"])

    def _cancel(self, job: Mapping[str, Any]) -> None:
        if shapes.job_state(job) in (JobState.STARTING, JobState.RUNNING):
            self.http.call(
                "DELETE",
                f"/ml/v4/trainings/{job['metadata']['id']}",
                params={**self.scope, "hard_delete": "false"},
                tolerate=frozenset({400, 404}),
            )

    def describe_jobs(
        self,
        known: Mapping[str, JobState],
        changed_since: datetime | None = None,  # noqa: ARG002 - no time filter on this list
    ) -> Mapping[str, JobStatus]:
        """List running Stratus trainings; look up by tag the known ones not among them."""
        if not known:
            return {}
        seen: dict[str, Mapping[str, Any]] = {}
        for job in self._list(
            "/ml/v4/trainings", **{"tag.value": shapes.MANAGED, "state": "running"}
        ):
            name = str(job["metadata"].get("name", ""))
            if name in known and name not in seen:
                seen[name] = job
        for name in known.keys() - seen.keys():
            found = self._named(name)
            if found:
                seen[name] = found[0]
        return {
            name: shapes.job_status(name, job)
            for name, job in seen.items()
            if shapes.job_state(job) != known[name]
        }

    def stop_training(self, job_name: str) -> None:
        """DELETE (cancel, keeping the record); a finished or unknown job is left as it is."""
        for job in self._named(job_name):
            self._cancel(job)
