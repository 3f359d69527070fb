"""Evaluations on SageMaker: Processing jobs with the model and test data as inputs.

The container runs the evaluation script the way training's script mode does: the code
(a code bundle or a source_dir tarball) and ``model.tar.gz`` are unpacked, the model into
``SM_CHANNEL_MODEL``, each test channel is ``SM_CHANNEL_<NAME>``, hyperparameters are
``--name value`` arguments. SageMaker scrapes no metrics from processing jobs, so the metric
definitions ride along in the job's environment and the log is scraped once the job ends.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeVar

from app.backends import sagemaker_requests as req
from app.backends.base import (
    JobState,
    JobStatus,
    MetricDefinition,
    MetricPage,
    TrainingJobSpec,
)
from app.backends.sagemaker_images import job_image
from app.backends.sagemaker_serving import SageMakerServing

T = TypeVar("T")
ROOT = "/opt/ml/processing"
CODE, MODEL_ARCHIVE, MODEL = f"{ROOT}/input/code", f"{ROOT}/input/model", f"{ROOT}/model"
METRIC_ENV = "STRATUS_METRIC_"
MAX_ENV_VALUE = 256  # SageMaker's limit on a processing job's environment values
MAX_LOG_LINES = 100_000
# Unpack the code and the model, then hand over to the script with its arguments.
SCRIPT = (
    "set -e; cd " + CODE + '; for f in *.tar.gz; do tar -xzf "$f"; done; '
    "mkdir -p " + MODEL + "; tar -xzf " + MODEL_ARCHIVE + "/model.tar.gz -C " + MODEL + "; "
    'exec python3 "$SM_PROGRAM" "$@"'
)
STATES = {
    "InProgress": JobState.RUNNING,
    "Completed": JobState.COMPLETED,
    "Failed": JobState.FAILED,
    "Stopping": JobState.STOPPING,
    "Stopped": JobState.STOPPED,
}


def _input(name: str, uri: str, local_path: str) -> dict[str, Any]:
    return {
        "InputName": name,
        "S3Input": {
            "S3Uri": req._s3(uri, f"input {name!r}"),
            "LocalPath": local_path,
            "S3DataType": "S3Prefix",
            "S3InputMode": "File",
            "S3DataDistributionType": "FullyReplicated",
        },
    }


def _metric_environment(definitions: tuple[MetricDefinition, ...]) -> dict[str, str]:
    env = {}
    for index, rule in enumerate(definitions):
        value = f"{rule.name}={rule.regex}"
        if len(value) > MAX_ENV_VALUE:
            raise req._invalid(
                f"metric {rule.name!r}: name and regex exceed {MAX_ENV_VALUE} characters, "
                "more than a processing job's environment holds"
            )
        env[f"{METRIC_ENV}{index}"] = value
    return env


def processing_job_request(spec: TrainingJobSpec, *, image: str, role_arn: str) -> dict[str, Any]:
    """The CreateProcessingJob request of an evaluation, as AWS receives it."""
    code = spec.code_uri or spec.source_dir
    if not spec.entrypoint or code is None:
        raise req._invalid("an evaluation on SageMaker needs an entrypoint and its code")
    inputs = [
        _input("code", code, CODE),
        _input("model", req._s3(spec.model_uri, "the model artifact"), MODEL_ARCHIVE),
    ]
    channels = {"SM_CHANNEL_MODEL": MODEL}
    for name, uri in spec.input_channels.items():
        inputs.append(_input(name, uri, f"{ROOT}/input/data/{name}"))
        channels[f"SM_CHANNEL_{name.upper().replace('-', '_').replace('.', '_')}"] = (
            f"{ROOT}/input/data/{name}"
        )
    arguments = [
        part
        for name, value in spec.hyperparameters.items()
        for part in (f"--{name}", req.hyperparameter(value))
    ]
    request: dict[str, Any] = {
        "ProcessingJobName": spec.job_name,
        "ProcessingInputs": inputs,
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": spec.instance_count,
                "InstanceType": spec.instance_type,
                "VolumeSizeInGB": spec.volume_size_gb,
            }
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": spec.max_runtime_seconds},
        "AppSpecification": {
            "ImageUri": image,
            "ContainerEntrypoint": ["/bin/sh", "-c", SCRIPT, "evaluate"],
            **({"ContainerArguments": arguments} if arguments else {}),
        },
        "Environment": {
            **spec.environment,
            **channels,
            "SM_PROGRAM": spec.entrypoint,
            **_metric_environment(tuple(spec.metric_definitions)),
        },
        "RoleArn": role_arn,
        "Tags": req.training_tags(spec.job_name, spec.tags),
    }
    return request


def scrape(lines: list[str], environment: Mapping[str, str]) -> dict[str, float]:
    """The last value each metric definition (from the job's environment) finds in ``lines``."""
    found: dict[str, float] = {}
    for key, value in environment.items():
        if not key.startswith(METRIC_ENV) or "=" not in value:
            continue
        name, regex = value.split("=", 1)
        try:
            pattern = re.compile(regex)
        except re.error:
            continue
        for line in lines:
            match = pattern.search(line)
            if match and match.groups():
                try:
                    found[name] = float(match.group(1))
                except ValueError:
                    continue
    return found


class SageMakerProcessing(SageMakerServing):
    """The evaluation part of the SageMaker backend (a base of ``SageMakerBackend``)."""

    def submit_evaluation(self, spec: TrainingJobSpec) -> str:
        """CreateProcessingJob; a job of that name already there counts as this submission."""
        image = job_image(spec, self.region)
        request = processing_job_request(spec, image=image, role_arn=self._role(spec.role_arn))
        created = self._call_unless("exists", self.sm.create_processing_job, **request)
        if created is not None:
            return created["ProcessingJobArn"]
        existing = self._call(self.sm.describe_processing_job, ProcessingJobName=spec.job_name)
        return existing["ProcessingJobArn"]

    def describe_evaluations(
        self,
        known: Mapping[str, JobState],
        changed_since: datetime | None = None,  # noqa: ARG002 - few jobs: describe each
    ) -> Mapping[str, JobStatus]:
        """DescribeProcessingJob of each known job whose state moved; unknown ones are absent."""
        statuses = {}
        for name, state in known.items():
            described = self._call_unless(
                "missing", self.sm.describe_processing_job, ProcessingJobName=name
            )
            if described is None:
                continue
            current = STATES.get(str(described.get("ProcessingJobStatus")), JobState.RUNNING)
            if current != state:
                statuses[name] = self._status(name, current, described)
        return statuses

    def _status(self, name: str, state: JobState, described: Mapping[str, Any]) -> JobStatus:
        final: dict[str, float] = {}
        if state == JobState.COMPLETED:
            lines = list(self.fetch_logs(name, None, MAX_LOG_LINES).lines)
            final = scrape(lines, described.get("Environment") or {})
        return JobStatus(
            job_name=name,
            external_id=described["ProcessingJobArn"],
            state=state,
            failure_reason=req.scrub(str(described["FailureReason"]))
            if described.get("FailureReason")
            else None,
            final_metrics=final,
            started_at=described.get("ProcessingStartTime"),
            ended_at=described.get("ProcessingEndTime"),
        )

    def fetch_evaluation_metrics(self, job_name: str, cursor: str | None) -> MetricPage:  # noqa: ARG002
        """Final metrics come with the describe of the ended job; none are fetched live."""
        return MetricPage(points=(), next_cursor=cursor)

    def stop_evaluation(self, job_name: str) -> None:
        """StopProcessingJob; a finished or unknown job is left as it is."""
        described = self._call_unless(
            "missing", self.sm.describe_processing_job, ProcessingJobName=job_name
        )
        if described is not None and described.get("ProcessingJobStatus") == "InProgress":
            self._call(self.sm.stop_processing_job, ProcessingJobName=job_name)
