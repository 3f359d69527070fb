"""Evaluations on SageMaker (moto): the CreateProcessingJob request exactly as AWS receives
it, idempotent resubmit, describe, final metrics scraped from the job's log, stop; and
rolling an endpoint to another model with a new endpoint configuration and UpdateEndpoint."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto.core.responses import EmptyResult
from moto.core.utils import utcnow
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import SageMakerModelBackend
from moto.sagemaker.responses import SageMakerResponse

from app.backends import naming
from app.backends.base import (
    BackendError,
    EndpointState,
    EvaluationBackend,
    JobState,
    MetricDefinition,
    RollingBackend,
    TrainingJobSpec,
)
from app.backends.sagemaker import SageMakerBackend
from app.backends.sagemaker_processing import SCRIPT
from app.backends.sagemaker_rollout import generation
from app.backends.sagemaker_serving import PROCESSING_LOG_GROUP
from app.ids import uuid7
from tests.backends.conftest import REGION, ROLE, endpoint_name
from tests.backends.test_sagemaker_endpoints import spec as endpoint_spec

ECR = "763104351884.dkr.ecr.us-east-1.amazonaws.com"
MODEL = "s3://stratus-artifacts/runs/job/output/model.tar.gz"
METRICS = (
    MetricDefinition("ndcg_at_10", r"eval_ndcg@10=([0-9.]+)"),
    MetricDefinition("recall_at_10", r"eval_recall@10=([0-9.]+)"),
)


def evaluation_spec(**overrides: Any) -> TrainingJobSpec:
    values: dict[str, Any] = {
        "job_name": naming.evaluation_job_name(uuid7()),
        "instance_type": "ml.m5.large",
        "instance_count": 1,
        "max_runtime_seconds": 1800,
        "entrypoint": "evaluate.py",
        "code_uri": "s3://stratus-code/bundles/abc.tar.gz",
        "framework": "pytorch",
        "framework_version": "2.1",
        "hyperparameters": {"k": 10, "full": True},
        "input_channels": {"test": "s3://data/holdout/"},
        "metric_definitions": METRICS,
        "role_arn": ROLE,
        "tags": {"stratus:evaluation-id": "e-1"},
        "model_uri": MODEL,
    }
    values.update(overrides)
    return TrainingJobSpec(**values)


def _s3_input(name: str, uri: str, path: str) -> dict[str, Any]:
    return {
        "InputName": name,
        "S3Input": {
            "S3Uri": uri,
            "LocalPath": path,
            "S3DataType": "S3Prefix",
            "S3InputMode": "File",
            "S3DataDistributionType": "FullyReplicated",
        },
    }


def test_is_an_evaluation_and_rolling_backend(backend: SageMakerBackend) -> None:
    assert isinstance(backend, EvaluationBackend)
    assert isinstance(backend, RollingBackend)


def test_create_processing_job_as_aws_receives_it(
    backend: SageMakerBackend, moto_sm: SageMakerModelBackend, calls: Counter[str]
) -> None:
    sent: list[dict[str, Any]] = []
    backend.sm.meta.events.register(
        "before-parameter-build.sagemaker.CreateProcessingJob",
        lambda params, **_: sent.append(dict(params)),
    )
    spec = evaluation_spec()

    arn = backend.submit_evaluation(spec)

    assert arn == moto_sm.processing_jobs[spec.job_name].arn
    assert sent[0] == {
        "ProcessingJobName": spec.job_name,
        "ProcessingInputs": [
            _s3_input(
                "code", "s3://stratus-code/bundles/abc.tar.gz", "/opt/ml/processing/input/code"
            ),
            _s3_input("model", MODEL, "/opt/ml/processing/input/model"),
            _s3_input("test", "s3://data/holdout/", "/opt/ml/processing/input/data/test"),
        ],
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": 1,
                "InstanceType": "ml.m5.large",
                "VolumeSizeInGB": 30,
            }
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 1800},
        "AppSpecification": {
            "ImageUri": f"{ECR}/pytorch-training:2.1.0-cpu-py310",
            "ContainerEntrypoint": ["/bin/sh", "-c", SCRIPT, "evaluate"],
            "ContainerArguments": ["--k", "10", "--full", "true"],
        },
        "Environment": {
            "SM_CHANNEL_MODEL": "/opt/ml/processing/model",
            "SM_CHANNEL_TEST": "/opt/ml/processing/input/data/test",
            "SM_PROGRAM": "evaluate.py",
            "STRATUS_METRIC_0": "ndcg_at_10=eval_ndcg@10=([0-9.]+)",
            "STRATUS_METRIC_1": "recall_at_10=eval_recall@10=([0-9.]+)",
        },
        "RoleArn": ROLE,
        "Tags": sent[0]["Tags"],
    }
    assert {"Key": "stratus:evaluation-id", "Value": "e-1"} in sent[0]["Tags"]
    # A retry after a crash finds the job it made.
    assert backend.submit_evaluation(spec) == arn
    assert calls["CreateProcessingJob"] == 2
    assert len(moto_sm.processing_jobs) == 1


def test_refused_for_good_without_model_or_with_a_long_regex(backend: SageMakerBackend) -> None:
    with pytest.raises(BackendError) as no_model:
        backend.submit_evaluation(evaluation_spec(model_uri="/models/local.tar.gz"))
    assert not no_model.value.retryable
    long_rule = MetricDefinition("m", "x=(" + "[0-9]" * 60 + ")")
    with pytest.raises(BackendError, match="environment"):
        backend.submit_evaluation(evaluation_spec(metric_definitions=(long_rule,)))


def _log(job: str, *lines: str) -> None:
    logs = boto3.client("logs", region_name=REGION)
    try:
        logs.create_log_group(logGroupName=PROCESSING_LOG_GROUP)
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    stream = f"{job}/algo-1-1700000000"
    logs.create_log_stream(logGroupName=PROCESSING_LOG_GROUP, logStreamName=stream)
    now = int(datetime.now(UTC).timestamp() * 1000)
    events = [{"timestamp": now + i, "message": line} for i, line in enumerate(lines)]
    logs.put_log_events(logGroupName=PROCESSING_LOG_GROUP, logStreamName=stream, logEvents=events)


def test_describe_scrapes_final_metrics_from_the_log(
    backend: SageMakerBackend, moto_sm: SageMakerModelBackend
) -> None:
    spec = evaluation_spec()
    backend.submit_evaluation(spec)
    job = moto_sm.processing_jobs[spec.job_name]
    # Moto keeps neither the environment nor a running state: set them as AWS would have.
    job.environment = {"STRATUS_METRIC_0": "ndcg_at_10=eval_ndcg@10=([0-9.]+)"}
    job.processing_job_status = "InProgress"
    known = {spec.job_name: JobState.STARTING}
    assert backend.describe_evaluations(known)[spec.job_name].state is JobState.RUNNING
    assert backend.describe_evaluations({spec.job_name: JobState.RUNNING}) == {}

    _log(spec.job_name, "model: 1000 users", "eval_ndcg@10=0.3206 eval_recall@10=0.3486")
    job.processing_job_status = "Completed"
    job.processing_end_time = utcnow()
    status = backend.describe_evaluations({spec.job_name: JobState.RUNNING})[spec.job_name]

    assert status.state is JobState.COMPLETED
    assert status.final_metrics == {"ndcg_at_10": 0.3206}
    assert status.external_id == job.arn
    page = backend.fetch_logs(spec.job_name, None, 10)
    assert list(page.lines)[-1].startswith("eval_ndcg@10=")
    assert (
        backend.describe_evaluations({naming.evaluation_job_name(uuid7()): JobState.RUNNING}) == {}
    )


def test_stop_a_running_job_and_leave_a_finished_one(
    backend: SageMakerBackend, moto_sm: SageMakerModelBackend, calls: Counter[str]
) -> None:
    spec = evaluation_spec()
    backend.submit_evaluation(spec)
    backend.stop_evaluation(spec.job_name)  # moto finished it at once: nothing to stop
    assert calls["StopProcessingJob"] == 0
    moto_sm.processing_jobs[spec.job_name].processing_job_status = "InProgress"
    backend.stop_evaluation(spec.job_name)
    assert moto_sm.processing_jobs[spec.job_name].processing_job_status == "Stopped"
    backend.stop_evaluation(naming.evaluation_job_name(uuid7()))  # unknown: not an error


@pytest.fixture
def update_endpoint(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """UpdateEndpoint as AWS does it (moto lacks it): the endpoint goes Updating on the new
    configuration; the test finishes the blue/green switch by hand."""
    updates: list[str] = []

    def backend_update(
        self: SageMakerModelBackend, endpoint_name: str, endpoint_config_name: str
    ) -> str:
        endpoint = self.endpoints.get(endpoint_name)
        if endpoint is None:
            raise ValidationError(f"Could not find endpoint {endpoint_name}.")
        if endpoint.endpoint_status != "InService":
            raise ValidationError(f"Cannot update in-progress endpoint {endpoint_name}.")
        config = self.endpoint_configs[endpoint_config_name]
        endpoint.endpoint_config_name = endpoint_config_name
        endpoint.endpoint_status = "Updating"
        endpoint.production_variants = [
            {**v, "CurrentInstanceCount": v["InitialInstanceCount"]}
            for v in config.production_variants
        ]
        updates.append(endpoint_config_name)
        return str(endpoint.arn)

    def response_update(self: SageMakerResponse) -> EmptyResult:
        self.sagemaker_backend.update_endpoint(
            self._get_param("EndpointName"), self._get_param("EndpointConfigName")
        )
        return EmptyResult()

    monkeypatch.setattr(SageMakerModelBackend, "update_endpoint", backend_update, raising=False)
    monkeypatch.setattr(SageMakerResponse, "update_endpoint", response_update, raising=False)
    return updates


def test_update_endpoint_model_rolls_through_a_new_config(
    backend: SageMakerBackend, moto_sm: SageMakerModelBackend, update_endpoint: list[str]
) -> None:
    name = endpoint_name()
    backend.create_endpoint(endpoint_spec(name))
    new_artifact = "s3://stratus-artifacts/runs/better/output/model.tar.gz"
    suffix = generation(new_artifact)

    status = backend.update_endpoint_model(endpoint_spec(name, artifact_uri=new_artifact))

    assert status.state is EndpointState.UPDATING
    assert update_endpoint == [f"{name}-c-{suffix}"]
    model = moto_sm._models[f"{name}-m-{suffix}"]
    assert model.primary_container["ModelDataUrl"] == new_artifact
    variant = moto_sm.endpoint_configs[f"{name}-c-{suffix}"].production_variants[0]
    assert (variant["ModelName"], variant["InitialInstanceCount"]) == (f"{name}-m-{suffix}", 2)
    # Asked again (a retried task): the endpoint has that configuration, nothing is updated.
    moto_sm.endpoints[name].endpoint_status = "InService"
    again = backend.update_endpoint_model(endpoint_spec(name, artifact_uri=new_artifact))
    assert again.state is EndpointState.IN_SERVICE
    assert update_endpoint == [f"{name}-c-{suffix}"]
