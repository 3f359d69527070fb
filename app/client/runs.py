"""Runs: submit a directory as a code bundle, wait, follow the log, and the calls a tracked
run makes (metrics, parameters, complete, fail)."""

from __future__ import annotations

import builtins
import re
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from .errors import StratusError
from .models import Bundle, MetricPoint, Run
from .packing import Packed, pack_directory
from .sections import CHUNK, Ident, Section, poll
from .tracking import Param

RUN_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def run_name_for(directory: Path) -> str:
    """A valid run name from a directory's name (``my code/`` -> ``my-code``)."""
    name = RUN_NAME.sub("-", directory.resolve().name).strip("-._") or "run"
    return name[:100]


def metric_definitions(metrics: Mapping[str, str] | Iterable[str] | None) -> list[dict[str, str]]:
    """``{"loss": "loss=([0-9.]+)"}`` or ``["loss", ...]`` (the regex ``NAME=(number)``)."""
    if metrics is None:
        return []
    if isinstance(metrics, Mapping):
        return [{"name": n, "regex": r} for n, r in metrics.items()]
    return [{"name": n, "regex": rf"{re.escape(n)}=([-+0-9.eE]+)"} for n in metrics]


class Runs(Section):
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
            full["metric_definitions"] = metric_definitions(metrics)
        if instance_type:
            full["instance_type"] = instance_type
        if instance_count:
            full["instance_count"] = instance_count
        return self.create(project_id, name or run_name_for(directory), full, backend)

    def stop(self, run_id: Ident) -> Run:
        return self._one(Run, self._http.request("POST", f"/v1/runs/{run_id}/stop"))

    def wait(self, run_id: Ident, timeout: float | None = None, poll_s: float = 2.0) -> Run:
        """Poll until the run is completed, failed or stopped; ``TimeoutError`` after timeout."""
        return poll(lambda: self.get(run_id), lambda r: r.finished, timeout, poll_s, "run")

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


class Bundles(Section):
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
