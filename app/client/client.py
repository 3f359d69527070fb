"""``stratus.Client``: projects, runs (submit a directory, wait, follow logs), tracking from
training code, model versions, deployments, invocations and the optimizer's decisions."""

from __future__ import annotations

import builtins
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx

from . import config as config_mod
from .errors import StratusError
from .http import HTTP, Backoff
from .models import (
    RUN_TERMINAL,
    Bundle,
    Decision,
    Deployment,
    MetricPoint,
    ModelVersion,
    Project,
    Resource,
    Run,
    WhatIf,
)
from .packing import Packed, pack_directory
from .tracking import Param, TrackedRun

R = TypeVar("R", bound=Resource)
Ident = str | uuid.UUID
PAGE = 100
RUN_NAME = re.compile(r"[^A-Za-z0-9._-]+")
CHUNK = 1 << 16


def _as_uuid(value: Ident) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def run_name_for(directory: Path) -> str:
    """A valid run name from a directory's name (``my code/`` -> ``my-code``)."""
    name = RUN_NAME.sub("-", directory.resolve().name).strip("-._") or "run"
    return name[:100]


def _metric_definitions(metrics: Mapping[str, str] | Iterable[str] | None) -> list[dict[str, str]]:
    """``{"loss": "loss=([0-9.]+)"}`` or ``["loss", ...]`` (the regex ``NAME=(number)``)."""
    if metrics is None:
        return []
    if isinstance(metrics, Mapping):
        return [{"name": n, "regex": r} for n, r in metrics.items()]
    return [{"name": n, "regex": rf"{re.escape(n)}=([-+0-9.eE]+)"} for n in metrics]


class _Section:
    def __init__(self, client: Client) -> None:
        self._client = client
        self._http = client.http

    def _one(self, model: type[R], response: httpx.Response) -> R:
        return model.model_validate(response.json()).bind(self._client)

    def _all(
        self, model: type[R], path: str, params: Mapping[str, Any], limit: int | None
    ) -> list[R]:
        return collect(self._client, model, path, params, limit)


def collect(
    client: Client, model: type[R], path: str, params: Mapping[str, Any], limit: int | None
) -> list[R]:
    """Every item of a paged list (up to ``limit``), following ``next_cursor``."""
    items: list[R] = []
    cursor = None
    while True:
        page = dict(params) | {"cursor": cursor, "limit": min(PAGE, limit or PAGE)}
        body = client.http.request("GET", path, params=page).json()
        items += [model.model_validate(i).bind(client) for i in body["items"]]
        cursor = body.get("next_cursor")
        if not cursor or (limit is not None and len(items) >= limit):
            return items[:limit] if limit is not None else items


class Projects(_Section):
    def list(self, limit: int | None = None) -> list[Project]:
        return self._all(Project, "/v1/projects", {}, limit)

    def get(self, project: Ident) -> Project:
        """A project by id or by name."""
        project_id = _as_uuid(project)
        if project_id is None:
            for candidate in self.list():
                if candidate.name == project:
                    return candidate
            raise StratusError(404, "not_found", f"No project named {project!r} is visible.")
        return self._one(Project, self._http.request("GET", f"/v1/projects/{project_id}"))

    def create(
        self, name: str, description: str = "", default_backend: str | None = None
    ) -> Project:
        body: dict[str, Any] = {"name": name, "description": description}
        if default_backend:
            body["default_backend"] = default_backend
        return self._one(Project, self._http.request("POST", "/v1/projects", json=body))

    def resolve(self, project: Ident) -> uuid.UUID:
        """A project's id, from its id or its name."""
        return _as_uuid(project) or self.get(project).id


class Runs(_Section):
    def list(
        self, project: Ident, status: str | None = None, limit: int | None = None
    ) -> list[Run]:
        project_id = self._client.projects.resolve(project)
        path = f"/v1/projects/{project_id}/runs"
        return self._all(Run, path, {"status": status}, limit)

    def get(self, run_id: Ident) -> Run:
        return self._one(Run, self._http.request("GET", f"/v1/runs/{run_id}"))

    def create(
        self, project: Ident, name: str, spec: Mapping[str, Any], backend: str | None = None
    ) -> Run:
        project_id = self._client.projects.resolve(project)
        body: dict[str, Any] = {"name": name, "spec": dict(spec)}
        if backend:
            body["backend"] = backend
        response = self._http.request("POST", f"/v1/projects/{project_id}/runs", json=body)
        return self._one(Run, response)

    def submit(
        self,
        project: Ident,
        directory: str | Path,
        entrypoint: str,
        *,
        name: str | None = None,
        hyperparameters: Mapping[str, Param] | None = None,
        metrics: Mapping[str, str] | Iterable[str] | None = None,
        backend: str | None = None,
        instance_type: str | None = None,
        instance_count: int | None = None,
        spec: Mapping[str, Any] | None = None,
    ) -> Run:
        """Pack ``directory``, upload it as a code bundle and start a run of ``entrypoint``."""
        directory = Path(directory)
        if not (directory / entrypoint).is_file():
            raise StratusError(
                0, "no_entrypoint", f"{entrypoint} is not a file in {directory.resolve()}"
            )
        project_id = self._client.projects.resolve(project)
        bundle = self._client.bundles.upload(project_id, directory)
        full: dict[str, Any] = {
            "entrypoint": entrypoint,
            "code_bundle_id": str(bundle.id),
            **(spec or {}),
        }
        if hyperparameters:
            full["hyperparameters"] = dict(hyperparameters)
        if metrics:
            full["metric_definitions"] = _metric_definitions(metrics)
        if instance_type:
            full["instance_type"] = instance_type
        if instance_count:
            full["instance_count"] = instance_count
        return self.create(project_id, name or run_name_for(directory), full, backend)

    def stop(self, run_id: Ident) -> Run:
        return self._one(Run, self._http.request("POST", f"/v1/runs/{run_id}/stop"))

    def wait(self, run_id: Ident, timeout: float | None = None, poll_s: float = 2.0) -> Run:
        """Poll until the run is completed, failed or stopped; ``TimeoutError`` after timeout."""
        return _poll(lambda: self.get(run_id), lambda r: r.finished, timeout, poll_s, "run")

    def logs(self, run_id: Ident, follow: bool = False, poll_s: float = 1.0) -> Iterator[str]:
        """The job's log lines, oldest first. With ``follow``, keeps reading until the run has
        ended and everything it wrote has been read."""
        cursor: str | None = None
        ended = False
        while True:
            page = self._http.request(
                "GET", f"/v1/runs/{run_id}/logs", params={"cursor": cursor, "limit": 1000}
            ).json()
            yield from page["lines"]
            following = page.get("next_cursor")
            if page["lines"] and following is None:
                return  # the backend says the ended job's log is read out
            cursor = following or cursor
            if page["lines"]:
                continue
            if not follow or ended:
                return
            # Read once more after the run ends: lines written just before the end still come.
            ended = self.get(run_id).finished
            if not ended:
                time.sleep(poll_s)

    def metrics(self, run_id: Ident, name: str | None = None) -> builtins.list[MetricPoint]:
        points: builtins.list[MetricPoint] = []
        cursor = None
        while True:
            body = self._http.request(
                "GET",
                f"/v1/runs/{run_id}/metrics",
                params={"name": name, "cursor": cursor, "limit": 1000},
            ).json()
            points += [MetricPoint.model_validate(p) for p in body["items"]]
            cursor = body.get("next_cursor")
            if not cursor:
                return points

    def ingest_metrics(
        self, run_id: Ident, points: builtins.list[dict[str, Any]], batch_id: str | None = None
    ) -> int:
        """Store up to 10,000 points; a ``batch_id`` makes a resent batch count once."""
        body: dict[str, Any] = {"points": points}
        if batch_id:
            body["batch_id"] = batch_id
        key = f"metrics-{run_id}-{batch_id}" if batch_id else None
        response = self._http.request(
            "POST", f"/v1/runs/{run_id}/metrics", json=body, idempotency_key=key
        )
        return int(response.json()["accepted"])

    def log_params(self, run_id: Ident, params: Mapping[str, Param]) -> Run:
        body = {"hyperparameters": dict(params)}
        return self._one(Run, self._http.request("POST", f"/v1/runs/{run_id}/params", json=body))

    def complete(self, run_id: Ident, final_metrics: Mapping[str, float] | None = None) -> Run:
        body = {"final_metrics": dict(final_metrics or {})}
        response = self._http.request("POST", f"/v1/runs/{run_id}/complete", json=body)
        return self._one(Run, response)

    def fail(self, run_id: Ident, reason: str) -> Run:
        body = {"reason": reason or "failed"}
        return self._one(Run, self._http.request("POST", f"/v1/runs/{run_id}/fail", json=body))


class Bundles(_Section):
    def upload(self, project: Ident, directory: str | Path) -> Bundle:
        """Pack ``directory`` (see ``stratus.packing``) and upload it; same files, same bundle."""
        project_id = self._client.projects.resolve(project)
        with tempfile.TemporaryFile() as archive:
            packed = pack_directory(Path(directory), archive)
            if not packed.files:
                raise StratusError(0, "empty_bundle", f"nothing to pack in {directory}")

            def chunks() -> Iterator[bytes]:
                archive.seek(0)
                while block := archive.read(CHUNK):
                    yield block

            response = self._http.request(
                "POST",
                f"/v1/projects/{project_id}/code-bundles",
                content=chunks,
                headers={
                    "Content-Type": "application/gzip",
                    "Content-Length": str(packed.size_bytes),
                },
                idempotency_key=f"bundle-{project_id}-{packed.sha256}",
            )
        return self._one(Bundle, response)

    @staticmethod
    def pack(directory: str | Path, out: Path) -> Packed:
        with out.open("wb") as fileobj:
            return pack_directory(Path(directory), fileobj)


class Models(_Section):
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


class Deployments(_Section):
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

        return _poll(lambda: self.get(deployment_id), settled, timeout, poll_s, "deployment")


T = TypeVar("T")


def _poll(
    read: Callable[[], T],
    done: Callable[[T], bool],
    timeout: float | None,
    poll_s: float,
    what: str,
) -> T:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        current = read()
        if done(current):
            return current
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(f"the {what} did not settle within {timeout} s")
        time.sleep(poll_s)


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


__all__ = ["RUN_TERMINAL", "Client"]
