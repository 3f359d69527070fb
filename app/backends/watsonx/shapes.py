"""watsonx.ai (Watson Machine Learning v4) request bodies and response mapping."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from app.backends.base import (
    EndpointSpec,
    EndpointState,
    EndpointStatus,
    JobState,
    JobStatus,
    TrainingJobSpec,
)
from app.backends.cloud.common import label_value

MANAGED = "stratus-managed"
JOB_STATES = {
    "queued": JobState.STARTING,
    "pending": JobState.STARTING,
    "running": JobState.RUNNING,
    "storing": JobState.RUNNING,
    "completed": JobState.COMPLETED,
    "failed": JobState.FAILED,
    "canceled": JobState.STOPPED,
}
DEPLOYMENT_STATES = {
    "initializing": EndpointState.CREATING,
    "updating": EndpointState.UPDATING,
    "ready": EndpointState.IN_SERVICE,
    "failed": EndpointState.FAILED,
}


def job_tag(job_name: str) -> str:
    """The tag a training carries so a resubmit finds it (ids are chosen by watsonx)."""
    return f"stratus-job-{label_value(job_name)}"


def serving_name(endpoint_name: str) -> str:
    """The deployment's serving name (unique in the region: a reuse answers 409)."""
    return "st_" + endpoint_name.rsplit("-", 1)[-1][:33]


def _ref(uri: str, ref_id: str | None = None) -> dict[str, Any]:
    kind = "s3" if uri.startswith("s3://") else "fs"
    ref: dict[str, Any] = {"type": kind, "location": {"path": uri}}
    if ref_id:
        ref["id"] = ref_id
    return ref


def training(spec: TrainingJobSpec, space_id: str, software_spec: str) -> dict[str, Any]:
    command = " ".join(
        [f"python {spec.entrypoint or 'train.py'}"]
        + [f"--{k}={v}" for k, v in spec.hyperparameters.items()]
    )
    body: dict[str, Any] = {
        "name": spec.job_name,
        "space_id": space_id,
        "tags": [MANAGED, job_tag(spec.job_name)],
        "training_data_references": [_ref(uri, name) for name, uri in spec.input_channels.items()],
        "results_reference": _ref(spec.output_location or f"stratus/{spec.job_name}"),
        "model_definition": {
            "command": command,
            "hardware_spec": {"name": spec.instance_type, "nodes": spec.instance_count},
            "software_spec": {"name": software_spec},
            "parameters": dict(spec.hyperparameters),
        },
        "custom": {**spec.tags, **({"image": spec.image} if spec.image else {})},
    }
    return body


def job_state(job: Mapping[str, Any]) -> JobState:
    state = str(job.get("entity", {}).get("status", {}).get("state", ""))
    return JOB_STATES.get(state, JobState.STARTING)


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None


def job_status(job_name: str, job: Mapping[str, Any]) -> JobStatus:
    entity = job.get("entity", {})
    status = entity.get("status", {})
    state = job_state(job)
    errors = status.get("failure", {}).get("errors") or [{}]
    failure = errors[0].get("message") if state == JobState.FAILED else None
    output = entity.get("results_reference", {}).get("location", {}).get("path")
    return JobStatus(
        job_name=job_name,
        external_id=str(job["metadata"]["id"]),
        state=state,
        message=status.get("message", {}).get("text"),
        failure_reason=(failure or "the training failed") if state == JobState.FAILED else None,
        artifact_uri=output if state == JobState.COMPLETED else None,
        started_at=_time(status.get("running_at")),
        ended_at=_time(status.get("completed_at")),
        secondary_status=status.get("state"),
    )


def model(spec: EndpointSpec, space_id: str, model_type: str, software_spec: str) -> dict[str, Any]:
    return {
        "name": f"{spec.endpoint_name}-m",
        "space_id": space_id,
        "type": model_type,
        "software_spec": {"name": software_spec},
        "tags": [MANAGED, f"{spec.endpoint_name}-m"],
        "custom": {"artifact_uri": spec.artifact_uri},
    }


def deployment(spec: EndpointSpec, space_id: str, model_id: str) -> dict[str, Any]:
    return {
        "name": spec.endpoint_name,
        "space_id": space_id,
        "asset": {"id": model_id},
        "online": {"parameters": {"serving_name": serving_name(spec.endpoint_name)}},
        "hardware_request": {"size": spec.instance_type, "num_nodes": spec.instance_count},
        "tags": [MANAGED],
        "custom": dict(spec.tags),
    }


def endpoint_status(name: str, deployed: Mapping[str, Any] | None) -> EndpointStatus:
    if deployed is None:
        return EndpointStatus(name, "", EndpointState.GONE, 0)
    entity = deployed.get("entity", {})
    status = entity.get("status", {})
    state = DEPLOYMENT_STATES.get(str(status.get("state")), EndpointState.CREATING)
    count = int(entity.get("hardware_request", {}).get("num_nodes", 0))
    errors = status.get("failure", {}).get("errors") or [{}]
    reason = errors[0].get("message") if state == EndpointState.FAILED else None
    return EndpointStatus(name, str(deployed["metadata"]["id"]), state, count, reason)
