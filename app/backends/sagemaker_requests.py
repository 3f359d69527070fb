"""SageMaker request bodies and response mapping as pure functions (no boto3 here)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from typing import Any

from app.backends import naming
from app.backends.base import (
    BackendError,
    EndpointState,
    EndpointStatus,
    HyperValue,
    JobState,
    JobStatus,
    TrainingJobSpec,
)

VARIANT = "AllTraffic"
MAX_HYPERPARAMETER_CHARS = 2500

JOB_STATES = {
    "InProgress": JobState.RUNNING,
    "Stopping": JobState.STOPPING,
    "Completed": JobState.COMPLETED,
    "Failed": JobState.FAILED,
    "Stopped": JobState.STOPPED,
}
ENDPOINT_STATES = {
    "Creating": EndpointState.CREATING,
    "Updating": EndpointState.UPDATING,
    "SystemUpdating": EndpointState.UPDATING,
    "RollingBack": EndpointState.UPDATING,
    # Out of service is usually transient (a failover); it is not a terminal failure.
    "OutOfService": EndpointState.UPDATING,
    "InService": EndpointState.IN_SERVICE,
    "Deleting": EndpointState.DELETING,
    "Failed": EndpointState.FAILED,
    "UpdateRollbackFailed": EndpointState.FAILED,
}


# An ARN runs to the next blank or quote; an account id is 12 digits standing alone.
_ARN = re.compile(r"arn:aws[a-z-]*:[^\s\"'`,;)\]}]*")
_ACCOUNT_ID = re.compile(r"(?<![0-9A-Za-z])\d{12}(?![0-9A-Za-z])")


def scrub(text: str) -> str:
    """An AWS message fit for callers: ARNs and account ids replaced by placeholders."""
    return _ACCOUNT_ID.sub("<account>", _ARN.sub("<arn>", text))


def _scrubbed(text: Any) -> str | None:
    return None if text is None else scrub(str(text))


def _invalid(message: str) -> BackendError:
    return BackendError(message, retryable=False)


def hyperparameter(value: HyperValue) -> str:
    """SageMaker takes strings only; others are JSON (``5``, ``0.05``, ``true``)."""
    return value if isinstance(value, str) else json.dumps(value)


def model_name(endpoint_name: str) -> str:
    """The model behind an endpoint, named after it so a retry finds the same one."""
    return f"{endpoint_name}-m"


def endpoint_config_name(endpoint_name: str) -> str:
    """The endpoint configuration of an endpoint."""
    return f"{endpoint_name}-c"


def _deployment_id_of(endpoint_name: str) -> uuid.UUID | None:
    head = f"{naming.PREFIX}-d-"
    try:
        return uuid.UUID(hex=endpoint_name[len(head) :]) if endpoint_name.startswith(head) else None
    except ValueError:
        return None


def _tag_list(derived: dict[str, str], given: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in {**given, **derived}.items()]


def training_tags(job_name: str, given: Mapping[str, str] | None = None) -> list[dict[str, str]]:
    """Tags that lead from an AWS job back to its Stratus run (and project, when given)."""
    run_id = naming.run_id_of(job_name)
    return _tag_list({"stratus:run-id": str(run_id)} if run_id else {}, given or {})


def endpoint_tags(
    endpoint_name: str, given: Mapping[str, str] | None = None
) -> list[dict[str, str]]:
    """Tags that lead from an AWS endpoint back to its Stratus deployment (and project)."""
    deployment_id = _deployment_id_of(endpoint_name)
    derived = {"stratus:deployment-id": str(deployment_id)} if deployment_id else {}
    return _tag_list(derived, given or {})


def _s3(uri: str | None, what: str) -> str:
    if not uri or not uri.startswith("s3://"):
        raise _invalid(f"SageMaker needs an s3:// URI for {what}, got {uri!r}")
    return uri


def training_job_request(
    spec: TrainingJobSpec, *, image: str, role_arn: str, region: str
) -> dict[str, Any]:
    """The CreateTrainingJob request for ``spec``; BackendError (not retryable) if it cannot run."""
    hyper = {name: hyperparameter(value) for name, value in spec.hyperparameters.items()}
    if spec.entrypoint:
        # Script mode, as the SageMaker SDK does it: the framework image downloads the
        # source tarball and runs the entrypoint from it.
        if spec.code_uri is not None:  # a code bundle in the artifact store's S3 prefix
            hyper["sagemaker_submit_directory"] = _s3(spec.code_uri, "the code bundle")
        elif spec.source_dir is not None:
            source = _s3(spec.source_dir, "source_dir")
            if not source.endswith((".tar.gz", ".tgz")):
                raise _invalid(f"source_dir must be an s3:// .tar.gz for script mode: {source}")
            hyper["sagemaker_submit_directory"] = source
        elif not spec.image:
            raise _invalid(
                "script mode on a framework image needs source_dir (s3://….tar.gz) or a code bundle"
            )
        hyper["sagemaker_program"] = spec.entrypoint
        hyper["sagemaker_region"] = region
    too_long = [k for k, v in hyper.items() if len(v) > MAX_HYPERPARAMETER_CHARS]
    if too_long:
        raise _invalid(f"hyperparameters longer than {MAX_HYPERPARAMETER_CHARS} chars: {too_long}")
    algorithm: dict[str, Any] = {"TrainingImage": image, "TrainingInputMode": "File"}
    if spec.metric_definitions:
        algorithm["MetricDefinitions"] = [
            {"Name": m.name, "Regex": m.regex} for m in spec.metric_definitions
        ]
    stopping: dict[str, int] = {"MaxRuntimeInSeconds": spec.max_runtime_seconds}
    if spec.use_spot:
        stopping["MaxWaitTimeInSeconds"] = max(
            spec.max_wait_seconds or spec.max_runtime_seconds, spec.max_runtime_seconds
        )
    request: dict[str, Any] = {
        "TrainingJobName": spec.job_name,
        "AlgorithmSpecification": algorithm,
        "RoleArn": role_arn,
        "HyperParameters": hyper,
        "OutputDataConfig": {"S3OutputPath": _s3(spec.output_location, "output_location")},
        "ResourceConfig": {
            "InstanceType": spec.instance_type,
            "InstanceCount": spec.instance_count,
            "VolumeSizeInGB": spec.volume_size_gb,
        },
        "StoppingCondition": stopping,
        "Tags": training_tags(spec.job_name, spec.tags),
    }
    if spec.input_channels:
        request["InputDataConfig"] = [
            {
                "ChannelName": channel,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": _s3(uri, f"input channel {channel!r}"),
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
            for channel, uri in spec.input_channels.items()
        ]
    if spec.environment:
        request["Environment"] = dict(spec.environment)
    if spec.use_spot:
        request["EnableManagedSpotTraining"] = True
    return request


def job_state(summary: Mapping[str, Any]) -> JobState:
    """The state a ListTrainingJobs summary or a DescribeTrainingJob answer stands for."""
    return JOB_STATES.get(str(summary.get("TrainingJobStatus")), JobState.RUNNING)


def job_status(described: Mapping[str, Any]) -> JobStatus:
    """A DescribeTrainingJob answer as a JobStatus."""
    state = job_state(described)
    transitions = described.get("SecondaryStatusTransitions") or []
    artifacts = described.get("ModelArtifacts") or {}
    billable = described.get("BillableTimeInSeconds")
    instances = (described.get("ResourceConfig") or {}).get("InstanceCount") or 1
    return JobStatus(
        job_name=described["TrainingJobName"],
        external_id=described["TrainingJobArn"],
        state=state,
        message=_scrubbed(transitions[-1].get("StatusMessage")) if transitions else None,
        failure_reason=_scrubbed(described.get("FailureReason")),
        artifact_uri=artifacts.get("S3ModelArtifacts")
        if state in (JobState.COMPLETED, JobState.STOPPED)
        else None,
        final_metrics={
            m["MetricName"]: float(m["Value"])
            for m in described.get("FinalMetricDataList") or []
            if "MetricName" in m and "Value" in m
        },
        started_at=described.get("TrainingStartTime"),
        ended_at=described.get("TrainingEndTime"),
        secondary_status=described.get("SecondaryStatus"),
        # SageMaker bills each instance for this many seconds; cost wants instance-seconds.
        billable_seconds=float(billable) * instances if billable is not None else None,
    )


def endpoint_status(name: str, described: Mapping[str, Any] | None) -> EndpointStatus:
    """A DescribeEndpoint answer (None: no such endpoint) as an EndpointStatus."""
    if described is None:
        return EndpointStatus(name, "", EndpointState.GONE, 0)
    variants = described.get("ProductionVariants") or []
    return EndpointStatus(
        endpoint_name=name,
        external_id=described.get("EndpointArn", ""),
        state=ENDPOINT_STATES.get(str(described.get("EndpointStatus")), EndpointState.UPDATING),
        current_instances=sum(int(v.get("CurrentInstanceCount") or 0) for v in variants),
        failure_reason=_scrubbed(described.get("FailureReason")),
    )


def desired_instances(described: Mapping[str, Any]) -> int | None:
    """The instance count the endpoint is heading for, when it reports one."""
    for variant in described.get("ProductionVariants") or []:
        if variant.get("VariantName") == VARIANT and "DesiredInstanceCount" in variant:
            return int(variant["DesiredInstanceCount"])
    return None
