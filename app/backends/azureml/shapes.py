"""Azure ML request bodies and response mapping (ARM ``Microsoft.MachineLearningServices``)."""

from __future__ import annotations

import shlex
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

IN_FLIGHT_TAG = "stratus-in-flight"  # taken off once Stratus has seen the job end
DEPLOYMENT = "default"  # the one deployment of an endpoint; requests name it
JOB_STATES = {
    "NotStarted": JobState.STARTING,
    "Starting": JobState.STARTING,
    "Provisioning": JobState.STARTING,
    "Preparing": JobState.STARTING,
    "Queued": JobState.STARTING,
    "Running": JobState.RUNNING,
    "Finalizing": JobState.RUNNING,
    "Paused": JobState.RUNNING,
    "CancelRequested": JobState.STOPPING,
    "Completed": JobState.COMPLETED,
    "Failed": JobState.FAILED,
    "NotResponding": JobState.FAILED,
    "Canceled": JobState.STOPPED,
}
ENDED = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.STOPPED})
PROVISIONING = {
    "Creating": EndpointState.CREATING,
    "Updating": EndpointState.UPDATING,
    "Scaling": EndpointState.UPDATING,
    "Succeeded": EndpointState.IN_SERVICE,
    "Deleting": EndpointState.DELETING,
    "Failed": EndpointState.FAILED,
    "Canceled": EndpointState.FAILED,
}


def command_job(spec: TrainingJobSpec, compute_id: str, environment: str | None) -> dict[str, Any]:
    """The command job for ``spec``: ``python <entrypoint> --k v`` in an environment asset."""
    env_id = spec.image if spec.image and spec.image.startswith("azureml:") else environment
    if not env_id:
        raise BackendError(
            "Azure ML jobs run in an environment: give spec.image as azureml:<name>:<version> "
            "or set STRATUS_BACKENDS__AZUREML__ENVIRONMENT",
            retryable=False,
        )
    if not spec.entrypoint:
        raise BackendError("Azure ML command jobs need spec.entrypoint", retryable=False)
    args = " ".join(f"--{k} {shlex.quote(str(v))}" for k, v in spec.hyperparameters.items())
    variables = dict(spec.environment)
    if spec.code_uri or spec.source_dir:
        variables["STRATUS_CODE_URI"] = str(spec.code_uri or spec.source_dir)
    properties: dict[str, Any] = {
        "jobType": "Command",
        "displayName": spec.job_name,
        "experimentName": "stratus",
        "computeId": compute_id,
        "environmentId": env_id,
        "command": f"python {shlex.quote(spec.entrypoint)} {args}".strip(),
        "environmentVariables": variables,
        "inputs": {
            name: {"jobInputType": "uri_folder", "uri": uri}
            for name, uri in spec.input_channels.items()
        },
        "resources": {"instanceCount": spec.instance_count, "instanceType": spec.instance_type},
        "limits": {"jobLimitsType": "Command", "timeout": f"PT{spec.max_runtime_seconds}S"},
        "tags": {**spec.tags, IN_FLIGHT_TAG: "true"},
    }
    if spec.output_location:
        properties["outputs"] = {
            "model": {"jobOutputType": "uri_folder", "uri": spec.output_location}
        }
    return {"properties": properties}


def job_state(job: Mapping[str, Any]) -> JobState:
    return JOB_STATES.get(str(job.get("properties", {}).get("status")), JobState.STARTING)


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None


def job_status(job: Mapping[str, Any]) -> JobStatus:
    props = job.get("properties", {})
    state = job_state(job)
    output = props.get("outputs", {}).get("model", {}).get("uri")
    error = props.get("error") or {}
    timing = job.get("systemData", {})
    return JobStatus(
        job_name=str(job["name"]),
        external_id=str(job["id"]),
        state=state,
        message=error.get("message"),
        failure_reason=(error.get("message") or "the job failed")
        if state == JobState.FAILED
        else None,
        artifact_uri=output if state == JobState.COMPLETED else None,
        started_at=_time(props.get("startTime")) or _time(timing.get("createdAt")),
        ended_at=_time(props.get("endTime")),
        secondary_status=props.get("status"),
    )


def untagged(job: Mapping[str, Any]) -> dict[str, Any]:
    """The job as sent back by a PUT that takes the in-flight tag off (tags are mutable)."""
    props = dict(job.get("properties", {}))
    props["tags"] = {k: v for k, v in props.get("tags", {}).items() if k != IN_FLIGHT_TAG}
    return {"properties": props}


def model_version(spec: EndpointSpec) -> dict[str, Any]:
    return {"properties": {"modelUri": spec.artifact_uri, "modelType": "custom_model"}}


def deployment(spec: EndpointSpec, region: str, model_id: str, image: str | None) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "endpointComputeType": "Managed",
        "model": model_id,
        "instanceType": spec.instance_type,
        "environmentVariables": dict(spec.environment),
        "scaleSettings": {"scaleType": "Default"},
    }
    if image:
        properties["environmentId"] = image
    return {
        "location": region,
        "tags": dict(spec.tags),
        "properties": properties,
        "sku": {"name": "Default", "capacity": spec.instance_count},
    }


def endpoint_status(
    name: str, endpoint: Mapping[str, Any] | None, deployed: Mapping[str, Any] | None
) -> EndpointStatus:
    """The endpoint's state: its own while it is being made or removed, else its deployment's."""
    if endpoint is None:
        return EndpointStatus(name, "", EndpointState.GONE, 0)
    external = str(endpoint.get("id", name))
    own = PROVISIONING.get(
        str(endpoint.get("properties", {}).get("provisioningState")), EndpointState.CREATING
    )
    if own != EndpointState.IN_SERVICE or deployed is None:
        waiting = own if own != EndpointState.IN_SERVICE else EndpointState.CREATING
        return EndpointStatus(name, external, waiting, 0)
    props = deployed.get("properties", {})
    state = PROVISIONING.get(str(props.get("provisioningState")), EndpointState.CREATING)
    count = int(deployed.get("sku", {}).get("capacity", 0))
    reason = props.get("error", {}).get("message") if state == EndpointState.FAILED else None
    return EndpointStatus(name, external, state, count, reason)
