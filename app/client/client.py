"""``stratus.Client``: projects, runs (submit a directory, wait, follow logs), tracking from
training code, model versions, deployments, invocations and the optimizer's decisions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from . import config as config_mod
from .errors import StratusError
from .http import HTTP, Backoff
from .models import Decision, WhatIf
from .runs import Bundles, Runs
from .sections import Ident, Projects, collect
from .serving import Deployments, Models
from .tracking import Param, TrackedRun


class Client:
    """A Stratus server, as one API key sees it.

    ``url`` and ``api_key`` default to ``STRATUS_URL`` / ``STRATUS_API_KEY``, then to the file
    ``stratus login`` writes. Answers >= 400 raise ``StratusError``; connection errors, 429 and
    503 are retried with backoff, and every POST carries an Idempotency-Key.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 6,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.config = config_mod.resolve(url, api_key)
        if not self.config.api_key:
            raise StratusError(
                0,
                "no_api_key",
                "No API key: pass api_key=, set STRATUS_API_KEY or run `stratus login`.",
            )
        self.url = self.config.url
        self.http = HTTP(
            self.url,
            self.config.api_key,
            timeout=timeout,
            backoff=Backoff(retries=retries),
            transport=transport,
        )
        self.projects = Projects(self)
        self.runs = Runs(self)
        self.bundles = Bundles(self)
        self.models = Models(self)
        self.deployments = Deployments(self)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def whoami(self) -> dict[str, Any]:
        """Checks the key: the first projects it sees (raises 401 for a bad key)."""
        body: dict[str, Any] = self.http.request("GET", "/v1/projects", params={"limit": 1}).json()
        return body

    def start_run(
        self,
        project: Ident,
        name: str = "tracked",
        *,
        hyperparameters: Mapping[str, Param] | None = None,
        entrypoint: str | None = None,
        flush_interval_s: float = 1.0,
    ) -> TrackedRun:
        """A run tracked from this process (backend ``external``): ``with client.start_run(
        "proj", "exp-1") as run: run.log_metric("loss", 0.3, step=1)``."""
        spec: dict[str, Any] = {}
        if hyperparameters:
            spec["hyperparameters"] = dict(hyperparameters)
        if entrypoint:
            spec["entrypoint"] = entrypoint
        run = self.runs.create(project, name, spec, backend="external")
        return TrackedRun(self, run, flush_interval_s=flush_interval_s)

    def invoke(self, deployment_id: Ident, data: Any, content_type: str | None = None) -> Any:
        """Send ``data`` to the deployed model: JSON-able values as JSON, bytes as they are.
        Returns the answer as JSON when it is JSON, else its bytes."""
        path = f"/v1/deployments/{deployment_id}/invocations"
        if isinstance(data, bytes):
            headers = {"Content-Type": content_type or "application/octet-stream"}
            response = self.http.request("POST", path, content=data, headers=headers)
        else:
            response = self.http.request("POST", path, json=data)
        if "json" in response.headers.get("content-type", ""):
            return response.json()
        return response.content

    def decisions(self, deployment_id: Ident, limit: int | None = 20) -> list[Decision]:
        path = f"/v1/deployments/{deployment_id}/decisions"
        return collect(self, Decision, path, {}, limit)

    def what_if(
        self, deployment_id: Ident, instances: list[int], load_rps: float | None = None
    ) -> WhatIf:
        body: dict[str, Any] = {"instances": instances}
        if load_rps is not None:
            body["load_rps"] = load_rps
        path = f"/v1/deployments/{deployment_id}/what-if"
        response = self.http.request("POST", path, json=body)
        return WhatIf.model_validate(response.json()).bind(self)


__all__ = ["Client"]
