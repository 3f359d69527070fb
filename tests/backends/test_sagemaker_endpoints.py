"""Endpoints on SageMaker (moto): create, scale, describe, delete, invoke, metrics, logs."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto.cloudwatch.models import Statistics
from moto.sagemaker.models import SageMakerModelBackend

from app.backends.base import BackendError, EndpointSpec, EndpointState
from app.backends.sagemaker import SageMakerBackend
from app.backends.sagemaker_serving import LOG_GROUP
from tests.backends.conftest import REGION, endpoint_name, make_backend, new_job_name

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/serve:1"


def spec(name: str, **overrides: object) -> EndpointSpec:
    values: dict[str, object] = {
        "endpoint_name": name,
        "artifact_uri": "s3://stratus-artifacts/runs/job/output/model.tar.gz",
        "instance_type": "ml.m5.large",
        "instance_count": 2,
        "image": IMAGE,
    }
    values.update(overrides)
    return EndpointSpec(**values)  # type: ignore[arg-type]


def test_create_endpoint_is_in_service_and_idempotent(
    backend: SageMakerBackend, moto_sm: SageMakerModelBackend, calls: Counter[str]
) -> None:
    name = endpoint_name()

    status = backend.create_endpoint(spec(name, environment={"MODEL_NAME": "rec"}))

    assert status.state is EndpointState.IN_SERVICE
    assert status.current_instances == 2
    assert status.external_id == moto_sm.endpoints[name].arn
    model = moto_sm._models[f"{name}-m"]
    assert model.primary_container == {
        "Image": IMAGE,
        "ModelDataUrl": "s3://stratus-artifacts/runs/job/output/model.tar.gz",
        "Environment": {"MODEL_NAME": "rec"},
    }
    variant = moto_sm.endpoint_configs[f"{name}-c"].production_variants[0]
    assert variant["VariantName"] == "AllTraffic"
    assert variant["InstanceType"] == "ml.m5.large"
    assert variant["InitialInstanceCount"] == 2
    assert moto_sm.endpoints[name].tags[0]["Key"] == "stratus:deployment-id"

    # A retry after a crash: every create is refused as existing, the status is the same.
    again = backend.create_endpoint(spec(name))
    assert again == status
    assert len(moto_sm.endpoints) == len(moto_sm.endpoint_configs) == len(moto_sm._models) == 1
    assert calls["CreateEndpoint"] == 2


def test_serving_image_from_framework_or_settings(
    aws: None, moto_sm: SageMakerModelBackend
) -> None:
    backend = make_backend(inference_image="111111111111.dkr.ecr.us-east-1.amazonaws.com/d:1")
    name = endpoint_name()
    backend.create_endpoint(
        spec(name, image=None, framework="pytorch", instance_type="ml.g4dn.xlarge")
    )
    assert moto_sm._models[f"{name}-m"].primary_container["Image"] == (
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.5.1-gpu-py311"
    )
    other = endpoint_name()
    backend.create_endpoint(spec(other, image=None, framework="jax"))
    assert moto_sm._models[f"{other}-m"].primary_container["Image"].endswith("/d:1")

    with pytest.raises(BackendError) as caught:
        make_backend().create_endpoint(spec(endpoint_name(), image=None))
    assert caught.value.retryable is False
    assert "INFERENCE_IMAGE" in str(caught.value)


def test_endpoint_needs_a_role(aws: None) -> None:
    with pytest.raises(BackendError, match="no IAM role") as caught:
        make_backend(role_arn=None).create_endpoint(spec(endpoint_name()))
    assert caught.value.retryable is False


def test_update_capacity_sets_the_absolute_count(
    backend: SageMakerBackend, moto_sm: SageMakerModelBackend, calls: Counter[str]
) -> None:
    name = endpoint_name()
    backend.create_endpoint(spec(name))
    calls.clear()

    status = backend.update_capacity(name, 3)

    assert status.current_instances == 3
    assert calls["UpdateEndpointWeightsAndCapacities"] == 1
    # Already heading there: no second update.
    backend.update_capacity(name, 3)
    assert calls["UpdateEndpointWeightsAndCapacities"] == 1


def test_update_capacity_waits_for_an_idle_endpoint(
    backend: SageMakerBackend, moto_sm: SageMakerModelBackend
) -> None:
    name = endpoint_name()
    backend.create_endpoint(spec(name))
    moto_sm.endpoints[name].endpoint_status = "Updating"
    with pytest.raises(BackendError) as caught:
        backend.update_capacity(name, 4)
    assert caught.value.retryable is True
    with pytest.raises(BackendError) as missing:
        backend.update_capacity(endpoint_name(), 4)
    assert missing.value.retryable is False


@pytest.mark.parametrize(
    ("aws_status", "state"),
    [
        ("Creating", EndpointState.CREATING),
        ("Updating", EndpointState.UPDATING),
        ("SystemUpdating", EndpointState.UPDATING),
        ("RollingBack", EndpointState.UPDATING),
        ("InService", EndpointState.IN_SERVICE),
        ("Deleting", EndpointState.DELETING),
        ("Failed", EndpointState.FAILED),
    ],
)
def test_describe_endpoints_maps_states(
    backend: SageMakerBackend, moto_sm: SageMakerModelBackend, aws_status: str, state: EndpointState
) -> None:
    name, gone = endpoint_name(), endpoint_name()
    backend.create_endpoint(spec(name))
    moto_sm.endpoints[name].endpoint_status = aws_status
    if aws_status == "Failed":
        moto_sm.endpoints[name].failure_reason = "image not found"

    statuses = backend.describe_endpoints([name, gone])

    assert statuses[name].state is state
    assert statuses[gone].state is EndpointState.GONE
    if aws_status == "Failed":
        assert statuses[name].failure_reason == "image not found"


def test_delete_endpoint_removes_everything_and_tolerates_missing(
    backend: SageMakerBackend, moto_sm: SageMakerModelBackend
) -> None:
    name = endpoint_name()
    backend.create_endpoint(spec(name))
    backend.delete_endpoint(name)
    assert (moto_sm.endpoints, moto_sm.endpoint_configs, moto_sm._models) == ({}, {}, {})
    backend.delete_endpoint(name)
    assert backend.describe_endpoints([name])[name].state is EndpointState.GONE


def test_invoke_returns_the_answer_and_its_latency(backend: SageMakerBackend) -> None:
    name = endpoint_name()
    backend.create_endpoint(spec(name))
    answer = backend.invoke(name, b'{"user": 1}', "application/json")
    assert answer.body == b"body"  # moto's canned answer
    assert answer.content_type == "content_type"
    assert answer.latency_ms >= 0


@pytest.fixture
def percentiles(monkeypatch: pytest.MonkeyPatch) -> None:
    """CloudWatch answers pNN statistics; moto has none, so add nearest-rank percentiles."""
    plain = Statistics.get_statistics_for_type

    def with_percentiles(self: Statistics, stat: str) -> Any:
        if stat.startswith("p") and stat[1:].replace(".", "", 1).isdigit():
            values = sorted(self.metric_single_values_list)
            rank = max(1, math.ceil(float(stat[1:]) / 100 * len(values)))
            return values[rank - 1]
        return plain(self, stat)

    monkeypatch.setattr(Statistics, "get_statistics_for_type", with_percentiles)


@pytest.mark.usefixtures("percentiles")
def test_endpoint_metrics_from_cloudwatch(backend: SageMakerBackend) -> None:
    name = endpoint_name()
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)
    dims = [{"Name": "EndpointName", "Value": name}, {"Name": "VariantName", "Value": "AllTraffic"}]
    other = [
        {"Name": "EndpointName", "Value": "other"},
        {"Name": "VariantName", "Value": "AllTraffic"},
    ]
    at = start + timedelta(seconds=30)

    def put(metric: str, values: list[float], dimensions: list[dict[str, str]] = dims) -> None:
        cloudwatch.put_metric_data(
            Namespace="AWS/SageMaker",
            MetricData=[
                {"MetricName": metric, "Dimensions": dimensions, "Timestamp": at, "Value": v}
                for v in values
            ],
        )

    put("Invocations", [60, 60])
    put("InvocationsPerInstance", [30, 30])
    put("ModelLatency", [20_000, 40_000])  # microseconds
    put("OverheadLatency", [1_000, 3_000])
    put("Invocation4XXErrors", [1, 0])
    put("Invocation5XXErrors", [0, 2])
    put("Invocations", [999], other)

    samples = backend.fetch_endpoint_metrics(name, start, start + timedelta(minutes=5), 60)

    values: dict[str, list[float]] = defaultdict(list)
    for sample in samples:
        values[sample.name].append(sample.value)
        assert sample.timestamp == start + timedelta(seconds=60)  # the period's end
    assert values["invocations"] == [120.0]
    assert values["invocations_per_instance"] == [60.0]
    assert values["latency_mean_ms"] == [32.0]
    assert values["latency_p95_ms"] == [43.0]
    assert values["errors_4xx"] == [1.0]
    assert values["errors_5xx"] == [2.0]
    assert values["instances"] == [2.0]


def test_fetch_logs_pages_every_stream_once(backend: SageMakerBackend) -> None:
    job = new_job_name()
    assert list(backend.fetch_logs(job, None, 10).lines) == []  # no log group yet
    logs = boto3.client("logs", region_name=REGION)
    logs.create_log_group(logGroupName=LOG_GROUP)
    now = int(datetime.now(UTC).timestamp() * 1000)
    for host, count in (("algo-1-1700000000", 4), ("algo-2-1700000000", 2)):
        stream = f"{job}/{host}"
        logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
        logs.put_log_events(
            logGroupName=LOG_GROUP,
            logStreamName=stream,
            logEvents=[{"timestamp": now + i, "message": f"{host} line {i}"} for i in range(count)],
        )
    logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=f"{new_job_name()}/algo-1-1")

    first = backend.fetch_logs(job, None, 3)
    second = backend.fetch_logs(job, first.next_cursor, 3)
    third = backend.fetch_logs(job, second.next_cursor, 3)

    assert list(first.lines) == [f"algo-1-1700000000 line {i}" for i in range(3)]
    assert list(second.lines) == [
        "algo-1-1700000000 line 3",
        "algo-2-1700000000 line 0",
        "algo-2-1700000000 line 1",
    ]
    assert list(third.lines) == []
    assert third.next_cursor is not None
    assert set(json.loads(third.next_cursor)) == {
        f"{job}/algo-1-1700000000",
        f"{job}/algo-2-1700000000",
    }

    logs.put_log_events(
        logGroupName=LOG_GROUP,
        logStreamName=f"{job}/algo-2-1700000000",
        logEvents=[{"timestamp": now + 10, "message": "late line"}],
    )
    assert list(backend.fetch_logs(job, third.next_cursor, 3).lines) == ["late line"]
