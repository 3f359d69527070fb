"""Stratus end to end on SageMaker through moto: the HTTP API, the outbox relay and the worker
tasks on the real PostgreSQL (and, in the crash test, real Celery workers on the real Redis
talking HTTP to a moto server in this process).

tests/backends' patches make moto refuse duplicate names and stop jobs as AWS does. On top of
them, moto here starts jobs InProgress and endpoints Creating, resizes through Updating, makes
check-and-create atomic (moto's server is threaded; AWS names are unique under any
concurrency), and records every CreateTrainingJob that reaches it. Tests move jobs and
endpoints on by changing moto's state in this process.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient
from moto.core.utils import utcnow
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import SageMakerModelBackend, sagemaker_backends

from app.backends import registry
from app.backends.base import Backend
from app.backends.sagemaker import SageMakerBackend
from app.db import get_sessionmaker
from app.main import create_app
from app.settings import get_settings
from tests.backends.conftest import (  # noqa: F401 - fixtures used by this directory's tests
    ACCOUNT,
    REGION,
    ROLE,
    aws,
    no_sagemaker_sdk,
)
from tests.factories import make_key
from tests.workers.conftest import (  # noqa: F401 - fixtures used by this directory's tests
    UnitOfWork,
    app_on_pg,
    celery_queue,
    committed,
)
from workers.celery_app import celery_app
from workers.tasks.outbox import relay_outbox

SERVING_IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/serve:1"
TRAINING_IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/train:1"
SPEC: dict[str, Any] = {
    "image": TRAINING_IMAGE,
    "instance_type": "ml.m5.xlarge",
    "instance_count": 1,
    "hyperparameters": {"epochs": 3, "lr": 0.05},
    "input_channels": {"train": "s3://stratus-data/train/", "test": "s3://stratus-data/test/"},
    "output_location": "s3://stratus-artifacts/runs",
    "max_runtime_seconds": 3600,
    "metric_definitions": [{"name": "loss", "regex": "loss=([0-9.]+)"}],
}
# The S3 the test projects' owners allow their runs and models to use.
BACKEND_CONFIG: dict[str, Any] = {
    "sagemaker": {"s3_prefixes": ["s3://stratus-data/", "s3://stratus-artifacts/"]}
}
TERMINAL_JOB = frozenset({"Completed", "Failed", "Stopped"})


@dataclass
class CreateLog:
    """Every CreateTrainingJob that reached moto, by job name: moto's request log for it."""

    requests: Counter[str] = field(default_factory=Counter)
    accepted: Counter[str] = field(default_factory=Counter)
    # Job name -> ("received" (not made yet) or "created" (not answered yet), arrival time).
    in_flight: dict[str, tuple[str, float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Called with the job name after the request arrived, before the job is made.
    before_create: Callable[[str], None] | None = None

    def in_phase(self, phase: str, since: float = 0.0) -> list[str]:
        """Jobs whose request is in ``phase`` now, of requests that arrived after ``since``."""
        with self.lock:
            return [
                name
                for name, (at, arrived) in self.in_flight.items()
                if at == phase and arrived >= since
            ]


def install_aws_job_semantics(
    mp: pytest.MonkeyPatch, log: CreateLog, *, before_s: float = 0.0, after_s: float = 0.0
) -> None:
    """Wrap moto's (duplicate-refusing) CreateTrainingJob: atomic, recorded, InProgress.

    ``before_s``/``after_s`` slow the request down before the job exists and after it was
    made, so a client killed meanwhile leaves a job it never heard of.
    """
    create = SageMakerModelBackend.create_training_job

    def create_training_job(self: SageMakerModelBackend, training_job_name: str, **kw: Any) -> Any:
        name, arrived = training_job_name, time.monotonic()
        with log.lock:
            log.requests[name] += 1
            log.in_flight[name] = ("received", arrived)
        try:
            time.sleep(before_s)
            if log.before_create is not None:
                log.before_create(name)
            with log.lock:
                job: Any = create(self, training_job_name=name, **kw)
                log.accepted[name] += 1
                # AWS starts a job; moto finishes it on the spot.
                job.training_job_status = "InProgress"
                job.secondary_status = "Starting"
                job.training_end_time = None
                job.final_metric_data_list = []
                log.in_flight[name] = ("created", arrived)
            time.sleep(after_s)
            return job
        finally:
            with log.lock:
                log.in_flight.pop(name, None)

    mp.setattr(SageMakerModelBackend, "create_training_job", create_training_job)


def install_aws_endpoint_semantics(mp: pytest.MonkeyPatch) -> None:
    """Endpoints come up through Creating, resize through Updating and go away through
    Deleting, as on AWS."""
    create = SageMakerModelBackend.create_endpoint
    resize = SageMakerModelBackend.update_endpoint_weights_and_capacities
    delete = SageMakerModelBackend.delete_endpoint

    def create_endpoint(self: SageMakerModelBackend, endpoint_name: str, **kw: Any) -> Any:
        endpoint = create(self, endpoint_name=endpoint_name, **kw)
        endpoint.endpoint_status = "Creating"
        for variant in endpoint.production_variants:
            variant["CurrentInstanceCount"] = 0
        return endpoint

    def update_endpoint_weights_and_capacities(
        self: SageMakerModelBackend, endpoint_name: str, desired_weights_and_capacities: Any
    ) -> Any:
        endpoint = self.endpoints.get(endpoint_name)
        if endpoint is not None and endpoint.endpoint_status != "InService":
            raise ValidationError(
                f"Cannot update in-progress endpoint (status {endpoint.endpoint_status})."
            )
        serving = {
            v["VariantName"]: v.get("CurrentInstanceCount")
            for v in (endpoint.production_variants if endpoint else [])
        }
        arn = resize(
            self,
            endpoint_name=endpoint_name,
            desired_weights_and_capacities=desired_weights_and_capacities,
        )
        endpoint = self.endpoints[endpoint_name]
        endpoint.endpoint_status = "Updating"
        endpoint.last_modified_time = utcnow()
        for variant in endpoint.production_variants:  # still serving the old count
            variant["CurrentInstanceCount"] = serving.get(variant["VariantName"])
        return arn

    def delete_endpoint(self: SageMakerModelBackend, endpoint_name: str) -> None:
        endpoint = self.endpoints.get(endpoint_name)
        if endpoint is None:
            delete(self, endpoint_name=endpoint_name)  # refused: no such endpoint
            return
        endpoint.endpoint_status = "Deleting"
        endpoint.last_modified_time = utcnow()

    mp.setattr(SageMakerModelBackend, "create_endpoint", create_endpoint)
    mp.setattr(SageMakerModelBackend, "delete_endpoint", delete_endpoint)
    mp.setattr(
        SageMakerModelBackend,
        "update_endpoint_weights_and_capacities",
        update_endpoint_weights_and_capacities,
    )


def moto_backend() -> SageMakerModelBackend:
    """Moto's SageMaker state for the test account and region."""
    return sagemaker_backends[ACCOUNT][REGION]


def set_job(name: str, status: str, secondary: str | None = None, **attrs: Any) -> None:
    """Move a moto job as SageMaker would: status, secondary status, last-modified time."""
    job = moto_backend().training_jobs[name]
    now = utcnow()
    job.training_job_status = status
    job.secondary_status = secondary or status
    job.last_modified_time = now
    if status in TERMINAL_JOB:
        job.training_end_time = now
    for key, value in attrs.items():
        setattr(job, key, value)


def set_endpoint(name: str, status: str, current: int | None = None) -> None:
    endpoint = moto_backend().endpoints[name]
    endpoint.endpoint_status = status
    endpoint.last_modified_time = utcnow()
    if current is not None:
        for variant in endpoint.production_variants:
            variant["CurrentInstanceCount"] = current


def sagemaker_env(mp: pytest.MonkeyPatch, **extra: str) -> None:
    """Turn the SageMaker backend on through the settings, as a deployment would."""
    values = {
        "STRATUS_BACKENDS__SAGEMAKER__ENABLED": "true",
        "STRATUS_BACKENDS__SAGEMAKER__REGION": REGION,
        "STRATUS_BACKENDS__SAGEMAKER__ROLE_ARN": ROLE,
        "STRATUS_BACKENDS__SAGEMAKER__INFERENCE_IMAGE": SERVING_IMAGE,
        # The request budget is not under test here; the throttling test brings its own.
        "STRATUS_BACKENDS__SAGEMAKER__API_RATE_PER_S": "10000",
        "STRATUS_BACKENDS__SAGEMAKER__API_BURST": "10000",
        **extra,
    }
    for name, value in values.items():
        mp.setenv(name, value)
    get_settings.cache_clear()
    registry.reset()


@pytest.fixture
def create_log() -> CreateLog:
    return CreateLog()


@pytest.fixture
def sagemaker(
    app_on_pg: None,  # noqa: F811
    aws: None,  # noqa: F811
    create_log: CreateLog,
) -> Iterator[SageMakerBackend]:
    """SageMaker enabled by the settings, on in-process moto; the backend the registry built."""
    with pytest.MonkeyPatch.context() as mp:
        install_aws_job_semantics(mp, create_log)
        install_aws_endpoint_semantics(mp)
        sagemaker_env(mp, STRATUS_BACKENDS__SAGEMAKER__POLL_INTERVAL_S="0.05")
        # The relay publishes each wake-up; executing it in place runs the topic's task here.
        mp.setitem(celery_app.conf, "task_always_eager", True)
        mp.setitem(celery_app.conf, "task_eager_propagates", True)
        try:
            backend: Backend | None = registry.get_backend("sagemaker")
            assert isinstance(backend, SageMakerBackend)
            yield backend
        finally:
            get_settings.cache_clear()
            registry.reset()


def relay_all() -> int:
    """Relay every due outbox message; each wake-up runs its task in place (eager)."""
    total = 0
    while published := relay_outbox():
        total += published
    return total


@dataclass
class Api:
    """The HTTP API as a project owner calls it."""

    client: TestClient
    headers: dict[str, str]
    project_id: str

    def get(self, path: str, **kw: Any) -> Any:
        response = self.client.get(path, headers=self.headers, **kw)
        assert response.status_code == 200, response.text
        return response.json()

    def send(self, method: str, path: str, status: int, **kw: Any) -> Any:
        response = self.client.request(method, path, headers=self.headers, **kw)
        assert response.status_code == status, response.text
        return response.json() if response.content else None

    def create_run(self, name: str = "recs", spec: dict[str, Any] | None = None) -> Any:
        body = {"name": name, "backend": "sagemaker", "spec": spec or SPEC}
        return self.send("POST", f"/v1/projects/{self.project_id}/runs", 201, json=body)


@pytest.fixture
def api(sagemaker: SageMakerBackend, committed: UnitOfWork) -> Iterator[Api]:  # noqa: F811
    """The app on the test database, and a project whose default backend is SageMaker."""
    with committed() as session:
        key = make_key(session, name="owner")
    app = create_app(get_settings(), get_sessionmaker())
    with TestClient(app) as client:
        name = f"sm-{uuid.uuid4().hex[:8]}"
        created = client.post(
            "/v1/projects",
            json={"name": name, "default_backend": "sagemaker", "backend_config": BACKEND_CONFIG},
            headers=key.headers,
        )
        assert created.status_code == 201, created.text
        yield Api(client, key.headers, created.json()["id"])
