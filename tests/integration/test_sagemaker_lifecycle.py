"""Runs and deployments on SageMaker end to end: the HTTP API, the outbox relay, the worker
tasks and pollers, and moto in this process, with the lifecycle driven through moto's state."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import boto3
from moto.core.utils import utcnow
from moto.sagemakerruntime.models import sagemakerruntime_backends

from app.backends.naming import endpoint_name, job_name
from app.backends.sagemaker import SageMakerBackend
from app.backends.sagemaker_serving import LOG_GROUP
from tests.backends.conftest import ACCOUNT, REGION
from tests.integration.conftest import (
    SERVING_IMAGE,
    TRAINING_IMAGE,
    Api,
    CreateLog,
    moto_backend,
    relay_all,
    set_endpoint,
    set_job,
)
from workers.tasks.deployments import poll_endpoints
from workers.tasks.runs import poll_once

ARTIFACT = "s3://stratus-artifacts/runs/final/model.tar.gz"


def sagemaker_calls(backend: SageMakerBackend) -> Counter[str]:
    """SageMaker operations the backend makes from now on, by name."""
    counter: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        counter[model.name] += 1

    backend.sm.meta.events.register("before-call.sagemaker", count)
    return counter


def submitted_run(api: Api, name: str = "recs") -> tuple[str, str]:
    """A run created through the API and submitted by the relay: (run id, job name)."""
    run = api.create_run(name)
    assert run["status"] == "pending"
    relay_all()
    return run["id"], job_name(uuid.UUID(run["id"]))


def completed_run(api: Api) -> tuple[str, str]:
    run_id, name = submitted_run(api)
    set_job(
        name,
        "Completed",
        model_artifacts={"S3ModelArtifacts": ARTIFACT},
        final_metric_data_list=[
            {"MetricName": "loss", "Value": 0.25, "Timestamp": utcnow()},
            {"MetricName": "ndcg_at_10", "Value": 0.41, "Timestamp": utcnow()},
        ],
        billable_time_in_seconds=600,
    )
    assert poll_once("sagemaker") == 1
    return run_id, name


def test_submitted_run_is_one_training_job_and_running(
    api: Api, sagemaker: SageMakerBackend, create_log: CreateLog
) -> None:
    run_id, name = submitted_run(api)

    assert create_log.requests == {name: 1}
    job = moto_backend().training_jobs[name]
    assert job.algorithm_specification["TrainingImage"] == TRAINING_IMAGE
    assert job.resource_config["InstanceType"] == "ml.m5.xlarge"
    assert job.hyper_parameters == {"epochs": "3", "lr": "0.05"}
    assert {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in job.input_data_config
    } == {
        "train": "s3://stratus-data/train/",
        "test": "s3://stratus-data/test/",
    }
    assert job.output_data_config == {"S3OutputPath": "s3://stratus-artifacts/runs"}
    assert {t["Key"]: t["Value"] for t in job.tags}["stratus:run-id"] == run_id
    run = api.get(f"/v1/runs/{run_id}")
    assert (run["status"], run["external_id"]) == ("running", job.arn)

    # A new secondary status only: nothing for the run's status, and no describe spent on it.
    calls = sagemaker_calls(sagemaker)
    set_job(name, "InProgress", "Training")
    assert poll_once("sagemaker") == 0
    assert api.get(f"/v1/runs/{run_id}")["status"] == "running"
    assert calls == {"ListTrainingJobs": 1}
    assert relay_all() == 0  # nothing was queued twice
    assert create_log.requests == {name: 1}


def test_completed_job_gives_a_model_version_and_metric_points(api: Api) -> None:
    run_id, _ = completed_run(api)

    run = api.get(f"/v1/runs/{run_id}")
    assert run["status"] == "completed"
    assert run["artifact_uri"] == ARTIFACT
    assert run["final_metrics"] == {"loss": 0.25, "ndcg_at_10": 0.41}
    assert run["ended_at"] is not None
    models = api.get(f"/v1/projects/{api.project_id}/models")["items"]
    assert [(m["name"], m["version"], m["artifact_uri"], m["source_run_id"]) for m in models] == [
        ("recs", 1, ARTIFACT, run_id)
    ]
    assert models[0]["metrics"] == {"loss": 0.25, "ndcg_at_10": 0.41}
    points = api.get(f"/v1/runs/{run_id}/metrics")["items"]
    assert sorted((p["name"], p["value"]) for p in points) == [("loss", 0.25), ("ndcg_at_10", 0.41)]
    assert poll_once("sagemaker") == 0  # nothing in flight: no second model version
    assert len(api.get(f"/v1/projects/{api.project_id}/models")["items"]) == 1


def test_failed_job_reason_reaches_the_api(api: Api) -> None:
    run_id, name = submitted_run(api)
    reason = "AlgorithmError: ExecuteUserScriptError: CUDA out of memory at epoch 2"
    set_job(name, "Failed", failure_reason=reason)

    assert poll_once("sagemaker") == 1

    run = api.get(f"/v1/runs/{run_id}")
    assert (run["status"], run["failure_reason"]) == ("failed", reason)
    assert run["artifact_uri"] is None
    assert api.get(f"/v1/projects/{api.project_id}/models")["items"] == []


def test_stop_reaches_stop_training_job_then_stopped(api: Api, sagemaker: SageMakerBackend) -> None:
    run_id, name = submitted_run(api)
    set_job(name, "InProgress", "Training")
    calls = sagemaker_calls(sagemaker)

    stopping = api.send("POST", f"/v1/runs/{run_id}/stop", 202)
    assert stopping["status"] == "stopping"
    relay_all()

    assert calls["StopTrainingJob"] == 1
    assert moto_backend().training_jobs[name].training_job_status == "Stopping"
    assert poll_once("sagemaker") == 0  # SageMaker says Stopping too
    assert api.get(f"/v1/runs/{run_id}")["status"] == "stopping"
    set_job(name, "Stopped")
    assert poll_once("sagemaker") == 1
    run = api.get(f"/v1/runs/{run_id}")
    assert run["status"] == "stopped"
    assert run["ended_at"] is not None


def test_job_stopped_by_sagemaker_itself_stops_the_run(api: Api) -> None:
    # MaxRuntimeInSeconds reached (or a stop from the console): Stopped with no stop asked.
    run_id, name = submitted_run(api)
    set_job(name, "InProgress", "Training")
    assert poll_once("sagemaker") == 0
    set_job(name, "Stopped", "MaxRuntimeExceeded")

    poll_once("sagemaker")

    assert api.get(f"/v1/runs/{run_id}")["status"] == "stopped"


def test_run_logs_come_from_cloudwatch(api: Api) -> None:
    run_id, name = submitted_run(api)
    logs = boto3.client("logs", region_name=REGION)
    logs.create_log_group(logGroupName=LOG_GROUP)
    stream = f"{name}/algo-1-1700000000"
    logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
    now = int(datetime.now(UTC).timestamp() * 1000)
    lines = ["epoch 1 loss=0.9", "epoch 2 loss=0.5", "epoch 3 loss=0.25"]
    logs.put_log_events(
        logGroupName=LOG_GROUP,
        logStreamName=stream,
        logEvents=[{"timestamp": now + i, "message": line} for i, line in enumerate(lines)],
    )

    first = api.get(f"/v1/runs/{run_id}/logs", params={"limit": 2})
    rest = api.get(f"/v1/runs/{run_id}/logs", params={"cursor": first["next_cursor"]})

    assert first["lines"] == lines[:2]
    assert rest["lines"] == lines[2:]


def test_deployment_from_the_run_model_through_its_endpoint_lifecycle(
    api: Api, sagemaker: SageMakerBackend
) -> None:
    completed_run(api)
    model = api.get(f"/v1/projects/{api.project_id}/models")["items"][0]
    resizes: list[dict[str, Any]] = []
    sagemaker.sm.meta.events.register(
        "before-parameter-build.sagemaker.UpdateEndpointWeightsAndCapacities",
        lambda params, **_: resizes.append(params),
    )
    body = {
        "name": "recs-prod",
        "model_version_id": model["id"],
        "instance_type": "ml.m5.large",
        "desired_instances": 1,
        "max_instances": 4,
    }

    created = api.send("POST", f"/v1/projects/{api.project_id}/deployments", 201, json=body)
    deployment_id, name = created["id"], endpoint_name(uuid.UUID(created["id"]))
    relay_all()

    sm = moto_backend()
    assert sm.endpoints[name].endpoint_status == "Creating"
    assert sm._models[f"{name}-m"].primary_container == {
        "Image": SERVING_IMAGE,
        "ModelDataUrl": ARTIFACT,
    }
    variant = sm.endpoint_configs[f"{name}-c"].production_variants[0]
    assert (variant["InstanceType"], variant["InitialInstanceCount"]) == ("ml.m5.large", 1)
    deployment = api.get(f"/v1/deployments/{deployment_id}")
    assert (deployment["status"], deployment["external_id"]) == ("creating", sm.endpoints[name].arn)
    poll_endpoints("sagemaker")  # still Creating on SageMaker
    assert api.get(f"/v1/deployments/{deployment_id}")["status"] == "creating"

    set_endpoint(name, "InService", current=1)
    poll_endpoints("sagemaker")
    deployment = api.get(f"/v1/deployments/{deployment_id}")
    assert (deployment["status"], deployment["current_instances"]) == ("in_service", 1)

    # Requests reach the endpoint through SageMaker's runtime.
    invoked: list[dict[str, Any]] = []
    sagemaker.runtime.meta.events.register(
        "before-parameter-build.sagemaker-runtime.InvokeEndpoint",
        lambda params, **_: invoked.append(params),
    )
    runtime = sagemakerruntime_backends[ACCOUNT][REGION]
    runtime.results_queue.append(('{"items": [3, 1, 2]}', "application/json", "AllTraffic", ""))
    answer = api.client.post(
        f"/v1/deployments/{deployment_id}/invocations",
        content=b'{"user": 7, "k": 3}',
        headers={**api.headers, "Content-Type": "application/json"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"items": [3, 1, 2]}
    assert invoked == [
        {"EndpointName": name, "Body": b'{"user": 7, "k": 3}', "ContentType": "application/json"}
    ]

    # A new desired count: the absolute target goes to SageMaker, which goes Updating.
    patched = api.send(
        "PATCH", f"/v1/deployments/{deployment_id}", 200, json={"desired_instances": 3}
    )
    assert patched["status"] == "updating"
    relay_all()
    assert resizes == [
        {
            "EndpointName": name,
            "DesiredWeightsAndCapacities": [
                {"VariantName": "AllTraffic", "DesiredInstanceCount": 3}
            ],
        }
    ]
    assert sm.endpoints[name].endpoint_status == "Updating"
    poll_endpoints("sagemaker")
    deployment = api.get(f"/v1/deployments/{deployment_id}")
    assert (deployment["status"], deployment["current_instances"]) == ("updating", 1)
    set_endpoint(name, "InService", current=3)
    poll_endpoints("sagemaker")
    deployment = api.get(f"/v1/deployments/{deployment_id}")
    assert (deployment["status"], deployment["current_instances"]) == ("in_service", 3)
    assert len(resizes) == 1

    deleting = api.send("DELETE", f"/v1/deployments/{deployment_id}", 202)
    assert deleting["status"] == "deleting"
    relay_all()

    assert sm.endpoints[name].endpoint_status == "Deleting"
    assert f"{name}-c" not in sm.endpoint_configs
    assert f"{name}-m" not in sm._models
    poll_endpoints("sagemaker")
    assert api.get(f"/v1/deployments/{deployment_id}")["status"] == "deleting"
    del sm.endpoints[name]  # SageMaker finished deleting it
    poll_endpoints("sagemaker")
    deployment = api.get(f"/v1/deployments/{deployment_id}")
    assert (deployment["status"], deployment["current_instances"]) == ("deleted", 0)
    assert name not in sm.endpoints
