"""What the API answers, as typed objects.

Light mirrors of the server's read schemas rather than the schemas themselves: these parse
answers without the server's settings or price tables, keep fields a newer server adds
(``extra="allow"``, and ``model_dump()`` gives them back), and carry the calls that make sense
on them (``run.wait()``, ``deployment.scale(3)``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, PrivateAttr

if TYPE_CHECKING:
    from .client import Client

RUN_TERMINAL = frozenset({"completed", "failed", "stopped"})
M = TypeVar("M", bound="Resource")


class Resource(BaseModel):
    """A resource read from the API, bound to the client that read it."""

    model_config = ConfigDict(extra="allow")
    _client: Client | None = PrivateAttr(default=None)

    def bind(self: M, client: Client) -> M:
        self._client = client
        return self

    @property
    def client(self) -> Client:
        if self._client is None:
            raise RuntimeError(f"this {type(self).__name__} is not bound to a Client")
        return self._client

    def _absorb(self: M, fresh: M) -> M:
        """Take the fields of a fresher read of the same resource; returns self."""
        for name in type(fresh).model_fields:
            setattr(self, name, getattr(fresh, name))
        if fresh.__pydantic_extra__ is not None:
            self.__pydantic_extra__ = dict(fresh.__pydantic_extra__)
        return self


class Project(Resource):
    id: uuid.UUID
    name: str
    description: str = ""
    default_backend: str = "local"
    budget_usd: float | None = None
    created_at: datetime


class Bundle(Resource):
    id: uuid.UUID
    sha256: str
    size_bytes: int
    created_at: datetime


class MetricPoint(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    value: float
    step: int | None = None
    timestamp: datetime


class Run(Resource):
    id: uuid.UUID
    project_id: uuid.UUID
    name: str
    backend: str
    spec: dict[str, Any]
    status: str
    status_reason: str | None = None
    failure_reason: str | None = None
    final_metrics: dict[str, float] = {}
    artifact_uri: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    instance_seconds: float | None = None
    cost_usd: float | None = None

    @property
    def finished(self) -> bool:
        return self.status in RUN_TERMINAL

    def refresh(self) -> Run:
        return self._absorb(self.client.runs.get(self.id))

    def wait(self, timeout: float | None = None, poll_s: float = 2.0) -> Run:
        """Block until the run is completed, failed or stopped; ``TimeoutError`` after
        ``timeout`` seconds. Returns the run, refreshed."""
        return self._absorb(self.client.runs.wait(self.id, timeout=timeout, poll_s=poll_s))

    def logs(self, follow: bool = False, poll_s: float = 1.0) -> Iterator[str]:
        """The job's log lines; with ``follow``, until the run ends and the log is drained."""
        return self.client.runs.logs(self.id, follow=follow, poll_s=poll_s)

    def stop(self) -> Run:
        return self._absorb(self.client.runs.stop(self.id))

    def metrics(self, name: str | None = None) -> list[MetricPoint]:
        return self.client.runs.metrics(self.id, name=name)


class ModelVersion(Resource):
    id: uuid.UUID
    project_id: uuid.UUID
    name: str
    version: int
    artifact_uri: str
    framework: str | None = None
    metrics: dict[str, float] = {}
    source_run_id: uuid.UUID | None = None
    created_at: datetime

    def download(self, path: str | None = None) -> str:
        """Save the artifact to ``path`` (default: its own file name here); returns the path."""
        return self.client.models.download(self.id, path)


class Deployment(Resource):
    id: uuid.UUID
    project_id: uuid.UUID
    model_version_id: uuid.UUID
    name: str
    backend: str
    instance_type: str
    status: str
    status_reason: str | None = None
    desired_instances: int
    current_instances: int
    min_instances: int
    max_instances: int
    scaling_policy: dict[str, Any] = {}
    created_at: datetime
    instance_seconds: float | None = None
    cost_usd: float | None = None

    def refresh(self) -> Deployment:
        return self._absorb(self.client.deployments.get(self.id))

    def wait(self, timeout: float | None = None, poll_s: float = 2.0) -> Deployment:
        """Block until in service at the desired count (or deleted, when deleting)."""
        fresh = self.client.deployments.wait(self.id, timeout=timeout, poll_s=poll_s)
        return self._absorb(fresh)

    def scale(self, instances: int) -> Deployment:
        return self._absorb(self.client.deployments.scale(self.id, instances))

    def delete(self) -> Deployment:
        return self._absorb(self.client.deployments.delete(self.id))

    def invoke(self, data: Any) -> Any:
        return self.client.invoke(self.id, data)


class Decision(Resource):
    id: uuid.UUID
    deployment_id: uuid.UUID
    mode: str
    action: str
    previous_instances: int
    desired_instances: int
    applied: bool
    reason: str
    details: dict[str, Any] = {}
    created_at: datetime


class WhatIf(Resource):
    deployment_id: uuid.UUID
    window: dict[str, Any] = {}
    fit: dict[str, Any] | None = None
    candidates: list[dict[str, Any]] = []
    note: str = ""
