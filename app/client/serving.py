"""Model versions (list, get, download) and deployments (create, scale, wait, delete)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx

from .models import Deployment, ModelVersion
from .sections import CHUNK, Ident, Section, poll


class Models(Section):
    def list(self, project: Ident, limit: int | None = None) -> list[ModelVersion]:
        project_id = self._client.projects.resolve(project)
        return self._all(ModelVersion, f"/v1/projects/{project_id}/models", {}, limit)

    def get(self, model_version_id: Ident) -> ModelVersion:
        return self._one(ModelVersion, self._http.request("GET", f"/v1/models/{model_version_id}"))

    def download(self, model_version_id: Ident, path: str | Path | None = None) -> str:
        """Stream the artifact to ``path`` (default: the server's file name, here)."""
        with self._http.stream("GET", f"/v1/models/{model_version_id}/artifact") as response:
            target = Path(path) if path else Path(_filename(response, model_version_id))
            partial = target.with_name(f".{target.name}.part")
            with partial.open("wb") as out:
                for block in response.iter_bytes(CHUNK):
                    out.write(block)
            partial.replace(target)
        return str(target)


def _filename(response: httpx.Response, model_version_id: Ident) -> str:
    found = re.search(r'filename="?([^";]+)"?', response.headers.get("content-disposition", ""))
    name = Path(found.group(1)).name if found else ""
    return name or f"model-{model_version_id}.tar.gz"


class Deployments(Section):
    def list(self, project: Ident, limit: int | None = None) -> list[Deployment]:
        project_id = self._client.projects.resolve(project)
        return self._all(Deployment, f"/v1/projects/{project_id}/deployments", {}, limit)

    def get(self, deployment_id: Ident) -> Deployment:
        return self._one(Deployment, self._http.request("GET", f"/v1/deployments/{deployment_id}"))

    def create(
        self,
        model_version_id: Ident,
        name: str,
        *,
        instances: int = 1,
        min_instances: int | None = None,
        max_instances: int | None = None,
        slo_ms: float | None = None,
        optimizer: bool | None = None,
        backend: str | None = None,
        instance_type: str | None = None,
    ) -> Deployment:
        """Deploy a model version (in the version's own project)."""
        model = self._client.models.get(model_version_id)
        policy: dict[str, Any] = {}
        if slo_ms is not None:
            policy["latency_slo_ms"] = slo_ms
        if optimizer is not None:
            policy["optimizer_enabled"] = optimizer
        body: dict[str, Any] = {
            "name": name,
            "model_version_id": str(model.id),
            "desired_instances": instances,
            "min_instances": min_instances or 1,
            "max_instances": max_instances or max(4, instances),
        }
        if policy:
            body["scaling_policy"] = policy
        if backend:
            body["backend"] = backend
        if instance_type:
            body["instance_type"] = instance_type
        path = f"/v1/projects/{model.project_id}/deployments"
        return self._one(Deployment, self._http.request("POST", path, json=body))

    def scale(self, deployment_id: Ident, instances: int) -> Deployment:
        """Set the desired instance count, widening min/max when it lies outside them."""
        current = self.get(deployment_id)
        body: dict[str, Any] = {"desired_instances": instances}
        if instances > current.max_instances:
            body["max_instances"] = instances
        if instances < current.min_instances:
            body["min_instances"] = instances
        response = self._http.request("PATCH", f"/v1/deployments/{deployment_id}", json=body)
        return self._one(Deployment, response)

    def delete(self, deployment_id: Ident) -> Deployment:
        response = self._http.request("DELETE", f"/v1/deployments/{deployment_id}")
        return self._one(Deployment, response)

    def wait(
        self, deployment_id: Ident, timeout: float | None = None, poll_s: float = 2.0
    ) -> Deployment:
        """Poll until settled: in service at the desired count, failed, or deleted."""

        def settled(d: Deployment) -> bool:
            if d.status in ("failed", "deleted"):
                return True
            return d.status == "in_service" and d.current_instances == d.desired_instances

        return poll(lambda: self.get(deployment_id), settled, timeout, poll_s, "deployment")
