"""Vertex AI request bodies and response mapping (aiplatform v1 REST), as pure functions."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from app.backends.base import (
    BackendError,
    EndpointSpec,
    EndpointState,
    EndpointStatus,
    JobState,
    JobStatus,
    TrainingJobSpec,
)
from app.backends.cloud.common import label_value, labels_of

MANAGED = "stratus-managed"  # label on every job Stratus submits
JOB_LABEL = "stratus-job"  # the job's Stratus name, how a resubmit finds it
JOB_STATES = {
    "JOB_STATE_QUEUED": JobState.STARTING,
    "JOB_STATE_PENDING": JobState.STARTING,
    "JOB_STATE_RUNNING": JobState.RUNNING,
    "JOB_STATE_UPDATING": JobState.RUNNING,
    "JOB_STATE_PAUSED": JobState.RUNNING,
    "JOB_STATE_CANCELLING": JobState.STOPPING,
    "JOB_STATE_SUCCEEDED": JobState.COMPLETED,
    "JOB_STATE_PARTIALLY_SUCCEEDED": JobState.COMPLETED,
    "JOB_STATE_FAILED": JobState.FAILED,
    "JOB_STATE_EXPIRED": JobState.FAILED,
    "JOB_STATE_CANCELLED": JobState.STOPPED,
}
ACTIVE = ("JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_CANCELLING")


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def active_filter(created_after: datetime | None) -> str:
    """Every in-flight Stratus job (optionally only those created after a time)."""
    states = " OR ".join(f'state="{s}"' for s in ACTIVE)
    clauses = [f'labels.{MANAGED}="true"', f"({states})"]
    if created_after is not None:
        clauses.append(f'create_time>="{rfc3339(created_after)}"')
    return " AND ".join(clauses)


def name_filter(job_name: str) -> str:
    """The job submitted under ``job_name``, whatever its state."""
    return f'labels.{JOB_LABEL}="{label_value(job_name)}"'


def custom_job(spec: TrainingJobSpec, service_account: str | None) -> dict[str, Any]:
    """The CustomJob for ``spec``: the image runs with the spec in its arguments and env."""
    if not spec.image:
        raise BackendError("Vertex AI jobs need a container image (spec.image)", retryable=False)
    env = dict(spec.environment)
    env.update({f"STRATUS_CHANNEL_{k.upper()}": v for k, v in spec.input_channels.items()})
    if spec.output_location:
        env["STRATUS_OUTPUT_URI"] = spec.output_location
    if spec.code_uri or spec.source_dir:
        env["STRATUS_CODE_URI"] = str(spec.code_uri or spec.source_dir)
    container: dict[str, Any] = {
        "imageUri": spec.image,
        "args": [f"--{k}={v}" for k, v in spec.hyperparameters.items()],
        "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
    }
    if spec.entrypoint:
        container["command"] = ["python", spec.entrypoint]
    pool = {
        "machineSpec": {"machineType": spec.instance_type},
        "diskSpec": {"bootDiskSizeGb": spec.volume_size_gb},
        "containerSpec": container,
    }
    # The first pool is the chief (one replica); the rest of the hosts are workers.
    pools: list[dict[str, Any]] = [{**pool, "replicaCount": "1"}]
    if spec.instance_count > 1:
        pools.append({**pool, "replicaCount": str(spec.instance_count - 1)})
    job_spec: dict[str, Any] = {
        "workerPoolSpecs": pools,
        "scheduling": {"timeout": f"{spec.max_runtime_seconds}s"},
    }
    if spec.output_location:
        job_spec["baseOutputDirectory"] = {"outputUriPrefix": spec.output_location}
    if service_account:
        job_spec["serviceAccount"] = service_account
    labels = labels_of(spec.tags) | {MANAGED: "true", JOB_LABEL: label_value(spec.job_name)}
    return {"displayName": spec.job_name, "labels": labels, "jobSpec": job_spec}


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None


def job_state(job: Mapping[str, Any]) -> JobState:
    return JOB_STATES.get(str(job.get("state")), JobState.STARTING)


def job_status(job_name: str, job: Mapping[str, Any]) -> JobStatus:
    error = job.get("error") or {}
    state = job_state(job)
    output = job.get("jobSpec", {}).get("baseOutputDirectory", {}).get("outputUriPrefix")
    return JobStatus(
        job_name=job_name,
        external_id=str(job["name"]),
        state=state,
        message=error.get("message"),
        failure_reason=error.get("message") if state == JobState.FAILED else None,
        artifact_uri=f"{output.rstrip('/')}/model/"
        if output and state == JobState.COMPLETED
        else None,
        started_at=_time(job.get("startTime")),
        ended_at=_time(job.get("endTime")),
        secondary_status=str(job.get("state", "")).removeprefix("JOB_STATE_").lower() or None,
    )


def oldest_first(jobs: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Jobs of one name in the order every worker agrees on: the first created wins."""
    return sorted(jobs, key=lambda j: (str(j.get("createTime", "")), str(j["name"])))


def model_id(endpoint_name: str) -> str:
    return f"{endpoint_name}-m"


def uploaded_model(spec: EndpointSpec, image: str, service_account: str | None) -> dict[str, Any]:
    model: dict[str, Any] = {
        "displayName": model_id(spec.endpoint_name),
        "artifactUri": spec.artifact_uri,
        "containerSpec": {
            "imageUri": image,
            "env": [{"name": k, "value": v} for k, v in sorted(spec.environment.items())],
        },
        "labels": labels_of(spec.tags),
    }
    body: dict[str, Any] = {"modelId": model_id(spec.endpoint_name), "model": model}
    if service_account:
        body["serviceAccount"] = service_account
    return body


def deploy_request(model_resource: str, spec: EndpointSpec) -> dict[str, Any]:
    return {
        "deployedModel": {
            "model": model_resource,
            "displayName": spec.endpoint_name,
            "dedicatedResources": replicas(spec.instance_count)
            | {"machineSpec": {"machineType": spec.instance_type}},
        },
        "trafficSplit": {"0": 100},
    }


def replicas(count: int) -> dict[str, int]:
    """A fixed replica count: Stratus' optimizer scales, Vertex's autoscaler stays out of it."""
    return {"minReplicaCount": count, "maxReplicaCount": count}


def _pending(operations: list[Mapping[str, Any]], kind: str) -> bool:
    return any(
        not op.get("done") and kind in str(op.get("metadata", {}).get("@type", ""))
        for op in operations
    )


def endpoint_status(
    name: str, endpoint: Mapping[str, Any] | None, operations: list[Mapping[str, Any]]
) -> EndpointStatus:
    """An endpoint's state from its deployed model and its unfinished operations."""
    if endpoint is None:
        return EndpointStatus(name, "", EndpointState.GONE, 0)
    external = str(endpoint.get("name", name))
    deployed = endpoint.get("deployedModels") or []
    if not deployed:
        failed = [op for op in operations if op.get("done") and op.get("error")]
        if failed and not _pending(operations, "DeployModel"):
            reason = str(failed[-1]["error"].get("message", "the deployment failed"))
            return EndpointStatus(name, external, EndpointState.FAILED, 0, reason)
        return EndpointStatus(name, external, EndpointState.CREATING, 0)
    count = int(deployed[0].get("dedicatedResources", {}).get("minReplicaCount", 0))
    state = (
        EndpointState.UPDATING
        if _pending(operations, "MutateDeployedModel")
        else (EndpointState.IN_SERVICE)
    )
    return EndpointStatus(name, external, state, count)


def deployed_model_id(endpoint: Mapping[str, Any]) -> str | None:
    deployed = endpoint.get("deployedModels") or []
    return str(deployed[0]["id"]) if deployed else None
