"""SageMaker through moto, in process: no request leaves this host.

Moto differs from AWS in a few places that matter here, so the fixtures make it behave like
AWS: creating something that already exists is refused (moto overwrites it), and
StopTrainingJob exists (moto lacks it). The backend under test keeps making the real calls.
"""

from __future__ import annotations

import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core.responses import EmptyResult
from moto.core.utils import utcnow
from moto.sagemaker.exceptions import ResourceInUseException, ValidationError
from moto.sagemaker.models import (
    FakeEndpoint,
    FakeEndpointConfig,
    FakeTrainingJob,
    SageMakerModelBackend,
    sagemaker_backends,
)
from moto.sagemaker.responses import SageMakerResponse

from app.backends import naming
from app.backends.base import TrainingJobSpec
from app.backends.ratelimit import InProcessTokenBucket
from app.backends.sagemaker import SageMakerBackend
from app.ids import uuid7
from app.settings import BackendSettings, SageMakerSettings, Settings

ACCOUNT = "123456789012"
REGION = "us-east-1"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/stratus-training"


def _refuse_duplicates(monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS refuses a second create under an existing name; moto silently replaces the first."""
    create_job = SageMakerModelBackend.create_training_job
    create_model = SageMakerModelBackend.create_model
    create_config = SageMakerModelBackend.create_endpoint_config
    create_endpoint = SageMakerModelBackend.create_endpoint

    def job(self: SageMakerModelBackend, training_job_name: str, **kw: Any) -> Any:
        if training_job_name in self.training_jobs:
            arn = FakeTrainingJob.arn_formatter(
                training_job_name, self.account_id, self.region_name
            )
            raise ResourceInUseException(
                "Training job names must be unique within an AWS account and region, and a "
                f"training job with this name already exists ({arn})"
            )
        return create_job(self, training_job_name=training_job_name, **kw)

    def model(self: SageMakerModelBackend, model_name: str, **kw: Any) -> Any:
        if model_name in self._models:
            raise ValidationError(f'Cannot create already existing model "{model_name}".')
        return create_model(self, model_name=model_name, **kw)

    def config(self: SageMakerModelBackend, endpoint_config_name: str, **kw: Any) -> Any:
        if endpoint_config_name in self.endpoint_configs:
            arn = FakeEndpointConfig.arn_formatter(
                endpoint_config_name, self.account_id, self.region_name
            )
            raise ValidationError(f'Cannot create already existing endpoint configuration "{arn}".')
        return create_config(self, endpoint_config_name=endpoint_config_name, **kw)

    def endpoint(self: SageMakerModelBackend, endpoint_name: str, **kw: Any) -> Any:
        if endpoint_name in self.endpoints:
            arn = FakeEndpoint.arn_formatter(endpoint_name, self.account_id, self.region_name)
            raise ValidationError(f'Cannot create already existing endpoint "{arn}".')
        return create_endpoint(self, endpoint_name=endpoint_name, **kw)

    monkeypatch.setattr(SageMakerModelBackend, "create_training_job", job)
    monkeypatch.setattr(SageMakerModelBackend, "create_model", model)
    monkeypatch.setattr(SageMakerModelBackend, "create_endpoint_config", config)
    monkeypatch.setattr(SageMakerModelBackend, "create_endpoint", endpoint)


def _add_stop_training_job(monkeypatch: pytest.MonkeyPatch) -> None:
    """StopTrainingJob as AWS does it: InProgress goes to Stopping; anything else is refused."""

    def backend_stop(self: SageMakerModelBackend, training_job_name: str) -> None:
        job = self.training_jobs.get(training_job_name)
        if job is None:
            raise ValidationError("Requested resource not found.")
        if job.training_job_status != "InProgress":
            raise ValidationError(
                f"The request was rejected because the training job is in status "
                f"{job.training_job_status}."
            )
        job.training_job_status = job.secondary_status = "Stopping"
        job.last_modified_time = utcnow()

    def response_stop(self: SageMakerResponse) -> EmptyResult:
        self.sagemaker_backend.stop_training_job(self._get_param("TrainingJobName"))
        return EmptyResult()

    monkeypatch.setattr(SageMakerModelBackend, "stop_training_job", backend_stop, raising=False)
    monkeypatch.setattr(SageMakerResponse, "stop_training_job", response_stop, raising=False)


@pytest.fixture(autouse=True)
def no_sagemaker_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Image resolution from the built-in table, whether or not the SDK extra is installed."""
    monkeypatch.setitem(sys.modules, "sagemaker", None)
    monkeypatch.setitem(sys.modules, "sagemaker.image_uris", None)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Moto's in-process AWS, with fake credentials so nothing real can be signed."""
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    _refuse_duplicates(monkeypatch)
    _add_stop_training_job(monkeypatch)
    with mock_aws():
        yield


def sagemaker_settings(**overrides: Any) -> Settings:
    """Settings with SageMaker enabled; the embedded broker, so buckets are per process."""
    values: dict[str, Any] = {"enabled": True, "region": REGION, "role_arn": ROLE}
    values.update(overrides)
    return Settings(
        env="dev", broker_url=None, backends=BackendSettings(sagemaker=SageMakerSettings(**values))
    )


def make_backend(**overrides: Any) -> SageMakerBackend:
    """A backend on moto with a budget large enough never to wait."""
    return SageMakerBackend(
        sagemaker_settings(**overrides),
        session=boto3.Session(region_name=REGION),
        limiter=InProcessTokenBucket(10_000.0, 10_000),
    )


@pytest.fixture
def backend(aws: None) -> SageMakerBackend:
    return make_backend()


@pytest.fixture
def moto_sm(aws: None) -> SageMakerModelBackend:
    """Moto's SageMaker state for this account and region, to drive lifecycles by hand."""
    return sagemaker_backends[ACCOUNT][REGION]


@pytest.fixture
def calls(backend: SageMakerBackend) -> Counter[str]:
    """SageMaker operations the backend made, by name (one per call, retries not counted)."""
    counter: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        counter[model.name] += 1

    backend.sm.meta.events.register("before-call.sagemaker", count)
    return counter


def job_spec(**overrides: Any) -> TrainingJobSpec:
    """A script-mode PyTorch job on a valid moto instance type."""
    values: dict[str, Any] = {
        "job_name": naming.job_name(uuid7()),
        "instance_type": "ml.m5.large",
        "instance_count": 1,
        "max_runtime_seconds": 3600,
        "entrypoint": "train.py",
        "source_dir": "s3://stratus-code/src.tar.gz",
        "framework": "pytorch",
        "framework_version": "2.1",
        "output_location": "s3://stratus-artifacts/runs",
        "role_arn": ROLE,
    }
    values.update(overrides)
    return TrainingJobSpec(**values)


def new_job_name() -> str:
    return naming.job_name(uuid7())


def endpoint_name() -> str:
    return naming.endpoint_name(uuid.uuid4())
