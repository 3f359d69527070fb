"""Harnesses for SageMaker (moto, in process) and the local backend (real processes, tiny
scripts), with the same surface as the fake clouds' harness."""

from __future__ import annotations

import json
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ConnectionClosedError
from moto.core.utils import utcnow
from moto.sagemaker.models import SageMakerModelBackend

from app.backends import naming
from app.backends.base import BackendError, EndpointSpec, TrainingJobSpec
from app.backends.local import LocalBackend
from app.backends.sagemaker import SageMakerBackend
from app.ids import uuid7
from tests.backends.conftest import job_spec as sagemaker_job_spec
from tests.backends.local.conftest import job, script
from tests.backends.test_sagemaker_endpoints import spec as sagemaker_endpoint_spec

# A job that runs until the test writes "ok" or "fail" next to it.
WAITING_JOB = """
import os, pathlib, sys, time
flag = pathlib.Path(os.environ["SM_CHANNEL_CONTROL"]) / "verdict"
while not flag.exists():
    time.sleep(0.05)
sys.exit(0 if flag.read_text() == "ok" else 1)
"""
# A model that answers {"status": N} with N, as a model's own error would.
ANSWERING_MODEL = """
import json

class Refused(Exception):
    def __init__(self, status):
        super().__init__(f"model says {status}")
        self.status_code = status

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    asked = json.loads(body or b"{}")
    if isinstance(asked, dict) and isinstance(asked.get("status"), int):
        raise Refused(asked["status"])
    return json.dumps({"echo": body.decode()}), "application/json"
"""


class SageMakerHarness:
    """SageMaker on moto: jobs are held InProgress until finished by the test."""

    name = "sagemaker"
    supports_throttling = True
    counts_calls = True

    def __init__(self, backend: SageMakerBackend, moto_sm: SageMakerModelBackend) -> None:
        self.backend = backend
        self.moto = moto_sm
        self.calls: Counter[str] = Counter()
        self._throttle = 0
        self._lose = False
        self.finished: set[str] = set()
        backend.sm.meta.events.register("before-call.sagemaker", self._count)
        backend.sm.meta.events.register("before-send.sagemaker", self._maybe_throttle)
        backend.sm.meta.events.register("after-call.sagemaker.CreateTrainingJob", self._lost)
        backend.runtime.meta.events.register("before-send.sagemaker-runtime", self._model)

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[model.name] += 1

    def _maybe_throttle(self, request: Any, **_: Any) -> AWSResponse | None:
        if self._throttle <= 0:
            return None
        self._throttle -= 1
        body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"})
        headers = {"Content-Type": "application/x-amz-json-1.1"}
        return AWSResponse(request.url, 400, headers, _Raw(body.encode()))

    def _lost(self, **_: Any) -> None:
        # Moto ends a job the moment it is created; AWS runs it: hold new ones InProgress.
        for job_name, held in self.moto.training_jobs.items():
            if job_name not in self.finished and held.training_job_status == "Completed":
                held.training_job_status, held.secondary_status = "InProgress", "Training"
                held.training_end_time, held.final_metric_data_list = None, []
                held.last_modified_time = utcnow()
        if self._lose:  # created in moto; the answer never reaches the caller
            self._lose = False
            raise ConnectionClosedError(
                endpoint_url="https://api.sagemaker.us-east-1.amazonaws.com"
            )

    def _model(self, request: Any, **_: Any) -> AWSResponse | None:
        asked = json.loads(request.body or b"{}")
        if not (isinstance(asked, dict) and isinstance(asked.get("status"), int)):
            return None
        status = asked["status"]
        body = {
            "__type": "ModelError",
            "message": f"Received client error ({status}) from model",
            "OriginalStatusCode": status,
            "OriginalMessage": f"model says {status}",
        }
        headers = {"Content-Type": "application/x-amz-json-1.1"}
        return AWSResponse(request.url, 424, headers, _Raw(json.dumps(body).encode()))

    def job_spec(self, job_name: str | None = None) -> TrainingJobSpec:
        return sagemaker_job_spec(job_name=job_name or naming.job_name(uuid7()))

    def jobs_named(self, job_name: str) -> int:
        return 1 if job_name in self.moto.training_jobs else 0

    def finish(self, job_name: str, ok: bool = True) -> None:
        held = self.moto.training_jobs[job_name]
        self.finished.add(job_name)
        status = "Completed" if ok else "Failed"
        held.training_job_status = held.secondary_status = status
        held.training_end_time = held.last_modified_time = utcnow()
        if not ok:
            held.failure_reason = "AlgorithmError: exit code 1"

    def settle(self) -> None:
        """Moto has nothing in progress: stops land at once."""
        for held in self.moto.training_jobs.values():
            if held.training_job_status == "Stopping":
                held.training_job_status = held.secondary_status = "Stopped"
                held.last_modified_time = utcnow()

    def lose_next_submit_answer(self) -> None:
        self._lose = True

    def throttle(self, requests: int) -> None:
        self._throttle = requests

    def api_calls(self) -> int:
        return sum(self.calls.values())

    def endpoint_spec(self, endpoint_name: str, count: int) -> EndpointSpec:
        return sagemaker_endpoint_spec(endpoint_name, instance_count=count)

    def replicas(self, endpoint_name: str) -> int:
        endpoint = self.moto.endpoints[endpoint_name]
        return int(endpoint.production_variants[0]["CurrentInstanceCount"])

    def close(self) -> None:
        pass


class _Raw:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Any:
        yield self.data

    def read(self, *_: Any) -> bytes:
        return self.data


class LocalHarness:
    """The local backend with a job that waits for its verdict and a model that answers."""

    name = "local"
    supports_throttling = False  # no API between Stratus and this host's processes
    counts_calls = False

    def __init__(self, backend: LocalBackend, directory: Path) -> None:
        self.backend = backend
        self.directory = directory
        self._lose = False
        submit = backend.submit_training

        def losing(spec: TrainingJobSpec) -> str:
            external = submit(spec)
            if self._lose:
                self._lose = False
                raise BackendError("the worker died before recording the job", retryable=True)
            return external

        backend.submit_training = losing  # type: ignore[method-assign]

    def job_spec(self, job_name: str | None = None) -> TrainingJobSpec:
        name = job_name or naming.job_name(uuid7())
        control = self.directory / f"{name}-control"
        control.mkdir(parents=True)
        control.chmod(0o755)
        source = script(self.directory / name, WAITING_JOB)
        return job(name, source, max_runtime_seconds=60, input_channels={"control": str(control)})

    def jobs_named(self, job_name: str) -> int:
        return 1 if (self.backend.work_dir / "jobs" / job_name).is_dir() else 0

    def finish(self, job_name: str, ok: bool = True) -> None:
        verdict = self.directory / f"{job_name}-control" / "verdict"
        verdict.write_text("ok" if ok else "fail")
        verdict.chmod(0o644)

    def settle(self) -> None:
        pass

    def lose_next_submit_answer(self) -> None:
        self._lose = True

    def throttle(self, requests: int) -> None:  # noqa: ARG002
        pytest.skip("the local backend calls no API that could throttle")

    def api_calls(self) -> int:
        return 0

    def endpoint_spec(self, endpoint_name: str, count: int) -> EndpointSpec:
        model = self.directory / f"model-{endpoint_name}"
        model.mkdir(parents=True, exist_ok=True)
        (model / "inference.py").write_text(textwrap.dedent(ANSWERING_MODEL))
        return EndpointSpec(
            endpoint_name=endpoint_name,
            artifact_uri=model.as_uri(),
            instance_type="local",
            instance_count=count,
        )

    def replicas(self, endpoint_name: str) -> int:
        return self.backend.describe_endpoints([endpoint_name])[endpoint_name].current_instances

    def close(self) -> None:
        pass
