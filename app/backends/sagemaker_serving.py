"""The SageMaker backend's endpoints, invocations, endpoint metrics and training logs.

A mixin of SageMakerBackend, which owns the clients and turns AWS errors into BackendError
(``_call``), so this module needs no boto3 of its own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from app.backends import sagemaker_metrics as cw
from app.backends import sagemaker_requests as req
from app.backends.base import (
    BackendError,
    EndpointSpec,
    EndpointState,
    EndpointStatus,
    Invocation,
    LogPage,
    MetricSample,
)
from app.backends.naming import EVALUATION_PREFIX
from app.backends.sagemaker_images import resolve_image
from app.settings import SageMakerSettings

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_logs import CloudWatchLogsClient
    from mypy_boto3_sagemaker import SageMakerClient
    from mypy_boto3_sagemaker_runtime import SageMakerRuntimeClient

T = TypeVar("T")
Tolerate = Literal["exists", "missing"]
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
PROCESSING_LOG_GROUP = "/aws/sagemaker/ProcessingJobs"  # evaluations run as processing jobs


def log_group(job_name: str) -> str:
    """Where a job's log streams are: evaluation jobs are processing jobs."""
    return PROCESSING_LOG_GROUP if job_name.startswith(EVALUATION_PREFIX) else LOG_GROUP


MAX_LOG_EVENTS = 10_000  # GetLogEvents' own ceiling per request


class SageMakerServing:
    """Endpoint and log operations over the clients of SageMakerBackend."""

    config: SageMakerSettings
    region: str
    sm: SageMakerClient
    runtime: SageMakerRuntimeClient
    cloudwatch: CloudWatchClient
    logs: CloudWatchLogsClient

    if TYPE_CHECKING:

        def _call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T: ...

        def _call_unless(
            self, tolerate: Tolerate, fn: Callable[..., T], /, *args: Any, **kwargs: Any
        ) -> T | None: ...

        def _role(self, explicit: str | None) -> str: ...

    def _describe_endpoint(self, endpoint_name: str) -> Mapping[str, Any] | None:
        return self._call_unless("missing", self.sm.describe_endpoint, EndpointName=endpoint_name)

    def create_endpoint(self, spec: EndpointSpec) -> EndpointStatus:
        """CreateModel, CreateEndpointConfig, CreateEndpoint; each one already there is kept."""
        name, role = spec.endpoint_name, self._role(spec.role_arn)
        container: dict[str, Any] = {
            "Image": spec.image or self._serving_image(spec),
            "ModelDataUrl": spec.artifact_uri,
        }
        if spec.environment:
            container["Environment"] = dict(spec.environment)
        variant = {
            "VariantName": req.VARIANT,
            "ModelName": req.model_name(name),
            "InstanceType": spec.instance_type,
            "InitialInstanceCount": spec.instance_count,
            "InitialVariantWeight": 1.0,
        }
        tags = req.endpoint_tags(name, spec.tags)
        config_name = req.endpoint_config_name(name)
        self._call_unless(
            "exists",
            self.sm.create_model,
            ModelName=req.model_name(name),
            ExecutionRoleArn=role,
            PrimaryContainer=container,
            Tags=tags,
        )
        self._call_unless(
            "exists",
            self.sm.create_endpoint_config,
            EndpointConfigName=config_name,
            ProductionVariants=[variant],
            Tags=tags,
        )
        self._call_unless(
            "exists",
            self.sm.create_endpoint,
            EndpointName=name,
            EndpointConfigName=config_name,
            Tags=tags,
        )
        return req.endpoint_status(name, self._describe_endpoint(name))

    def _serving_image(self, spec: EndpointSpec) -> str:
        fallback = self.config.inference_image
        if spec.framework:
            try:
                return resolve_image(
                    spec.framework, None, self.region, spec.instance_type, "inference"
                )
            except BackendError:
                if not fallback:
                    raise
        if fallback:
            return fallback
        raise BackendError(
            "no serving image: give the model an image or a framework, "
            "or set STRATUS_BACKENDS__SAGEMAKER__INFERENCE_IMAGE",
            retryable=False,
        )

    def update_capacity(self, endpoint_name: str, instance_count: int) -> EndpointStatus:
        """UpdateEndpointWeightsAndCapacities to the absolute count, once the endpoint is idle."""
        described = self._describe_endpoint(endpoint_name)
        if described is None:
            raise BackendError(f"endpoint {endpoint_name} does not exist", retryable=False)
        status = req.endpoint_status(endpoint_name, described)
        if req.desired_instances(described) == instance_count:
            return status
        if status.state != EndpointState.IN_SERVICE:
            # SageMaker refuses to change an endpoint while it is changing.
            raise BackendError(
                f"endpoint {endpoint_name} is {status.state}; capacity changes once in service",
                retryable=True,
            )
        self._call(
            self.sm.update_endpoint_weights_and_capacities,
            EndpointName=endpoint_name,
            DesiredWeightsAndCapacities=[
                {"VariantName": req.VARIANT, "DesiredInstanceCount": instance_count}
            ],
        )
        return req.endpoint_status(endpoint_name, self._describe_endpoint(endpoint_name))

    def delete_endpoint(self, endpoint_name: str) -> None:
        """Delete the endpoint, its configuration and its model; missing ones are fine."""
        self._call_unless("missing", self.sm.delete_endpoint, EndpointName=endpoint_name)
        self._call_unless(
            "missing",
            self.sm.delete_endpoint_config,
            EndpointConfigName=req.endpoint_config_name(endpoint_name),
        )
        self._call_unless("missing", self.sm.delete_model, ModelName=req.model_name(endpoint_name))

    def describe_endpoints(self, endpoint_names: Sequence[str]) -> Mapping[str, EndpointStatus]:
        """DescribeEndpoint for each name; a missing endpoint reports GONE."""
        return {
            name: req.endpoint_status(name, self._describe_endpoint(name))
            for name in endpoint_names
        }

    def invoke(self, endpoint_name: str, body: bytes, content_type: str) -> Invocation:
        """InvokeEndpoint, timed from the request to the last byte of the answer."""

        def send() -> tuple[bytes, str]:
            answer = self.runtime.invoke_endpoint(
                EndpointName=endpoint_name, Body=body, ContentType=content_type
            )
            return answer["Body"].read(), answer.get("ContentType", "application/octet-stream")

        started = time.perf_counter()
        payload, answer_type = self._call(send)
        return Invocation(payload, answer_type, (time.perf_counter() - started) * 1000.0)

    def fetch_endpoint_metrics(
        self, endpoint_name: str, start: datetime, end: datetime, period_s: int
    ) -> Sequence[MetricSample]:
        """GetMetricData over AWS/SageMaker for the endpoint's variant, as ENDPOINT_METRICS."""
        params: dict[str, Any] = {
            "MetricDataQueries": cw.metric_queries(endpoint_name, period_s),
            "StartTime": start,
            "EndTime": end,
            "ScanBy": "TimestampAscending",
        }
        results: list[Mapping[str, Any]] = []
        while True:
            page = self._call(self.cloudwatch.get_metric_data, **params)
            results.extend(page["MetricDataResults"])
            if not page.get("NextToken"):
                return cw.samples(cw.collect(results), period_s)
            params["NextToken"] = page["NextToken"]

    def fetch_logs(self, job_name: str, cursor: str | None, limit: int) -> LogPage:
        """Lines of the job's log streams (``<job>/algo-N-…``), stream by stream, from a cursor."""
        # The cursor holds each stream's forward token, so no line comes back twice.
        tokens: dict[str, str] = json.loads(cursor) if cursor else {}
        streams = self._log_streams(job_name)
        if streams is None:  # no log group yet: nothing has logged in this region
            return LogPage(lines=(), next_cursor=cursor)
        lines: list[str] = []
        for stream in streams:
            token = tokens.get(stream)
            while len(lines) < limit:
                params: dict[str, Any] = {
                    "logGroupName": log_group(job_name),
                    "logStreamName": stream,
                    "startFromHead": True,
                    "limit": min(limit - len(lines), MAX_LOG_EVENTS),
                }
                if token:
                    params["nextToken"] = token
                page = self._call(self.logs.get_log_events, **params)
                lines.extend(event.get("message", "").rstrip("\n") for event in page["events"])
                token = page.get("nextForwardToken", token)
                if not page["events"]:
                    break
            if token:
                tokens[stream] = token
        return LogPage(
            lines=lines, next_cursor=json.dumps(tokens, sort_keys=True) if tokens else cursor
        )

    def _log_streams(self, job_name: str) -> list[str] | None:
        names: list[str] = []
        params: dict[str, Any] = {
            "logGroupName": log_group(job_name),
            "logStreamNamePrefix": f"{job_name}/",
        }
        while True:
            page = self._call_unless("missing", self.logs.describe_log_streams, **params)
            if page is None:
                return None
            names.extend(s["logStreamName"] for s in page.get("logStreams", []))
            if not page.get("nextToken"):
                return sorted(names)
            params["nextToken"] = page["nextToken"]
