"""The SageMaker backend: training jobs and endpoints through boto3 (the only boto3 importer).

Every control-plane call takes a token from a bucket shared by all workers of the account and
region, retries throttling in botocore's standard mode, and surfaces failures as BackendError.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from app.backends import naming
from app.backends import sagemaker_requests as req
from app.backends.base import (
    BackendError,
    JobState,
    JobStatus,
    MetricPage,
    ModelError,
    TrainingJobSpec,
)
from app.backends.ratelimit import TokenBucket, bucket_for
from app.backends.sagemaker_images import job_image
from app.backends.sagemaker_processing import SageMakerProcessing
from app.backends.sagemaker_rollout import SageMakerRollout
from app.backends.sagemaker_serving import Tolerate
from app.observability import prometheus
from app.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_logs import CloudWatchLogsClient
    from mypy_boto3_sagemaker import SageMakerClient
    from mypy_boto3_sagemaker_runtime import SageMakerRuntimeClient

T = TypeVar("T")

MAX_ATTEMPTS = 5
RATE_WAIT_S = 30.0
THROTTLING = frozenset(
    {"Throttling", "ThrottlingException", "ThrottledException", "TooManyRequestsException"}
    | {"RequestLimitExceeded", "RequestThrottled", "SlowDown", "LimitExceededException"}
)
# ResourceLimitExceeded is the instance quota: it frees up as other jobs and endpoints end.
TRANSIENT = frozenset(
    {"ServiceUnavailable", "ServiceUnavailableException", "InternalFailure", "InternalError"}
    | {"InternalServerError", "RequestTimeout", "ModelNotReadyException", "ResourceLimitExceeded"}
)
_ACCOUNT = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", ""))


def _already_exists(exc: ClientError) -> bool:
    return _code(exc) == "ResourceInUse" or "already exist" in _message(exc).lower()


def _missing(exc: ClientError) -> bool:
    message = _message(exc).lower()
    return _code(exc) in ("ResourceNotFound", "ResourceNotFoundException") or any(
        words in message for words in ("could not find", "not found", "does not exist")
    )


def _translate(exc: ClientError | BotoCoreError) -> BackendError:
    if isinstance(exc, ClientError):
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        code = _code(exc)
        if code == "ModelError":  # the container answered with an error: pass it through
            extra: Mapping[str, Any] = exc.response  # InvokeEndpoint adds Original* fields
            original = int(str(extra.get("OriginalStatusCode") or 424))
            body = str(extra.get("OriginalMessage") or _message(exc)).encode()
            return ModelError(original, body, "text/plain")
        if code in THROTTLING or status == 429:
            prometheus.BACKEND_THROTTLES.labels(backend="sagemaker").inc()
        retryable = code in THROTTLING or code in TRANSIENT or status >= 500 or status == 429
        message = req.scrub(f"{exc.operation_name}: {code}: {_message(exc)}")
        return BackendError(message, retryable=retryable)
    # No credentials is configuration; anything else here is the network or a refresh.
    return BackendError(req.scrub(f"AWS: {exc}"), retryable=not isinstance(exc, NoCredentialsError))


class SageMakerBackend(SageMakerProcessing, SageMakerRollout):
    """Training jobs and endpoints on AWS SageMaker."""

    name = "sagemaker"

    def __init__(
        self,
        settings: Settings,
        *,
        session: boto3.Session | None = None,
        limiter: TokenBucket | None = None,
    ) -> None:
        self.config = settings.backends.sagemaker
        self.region = self.config.region
        session = session or boto3.Session()
        config = Config(
            region_name=self.region,
            retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
            user_agent_extra="stratus",
        )
        self.sm: SageMakerClient = session.client(
            "sagemaker", config=config, endpoint_url=self.config.endpoint_url
        )
        self.runtime: SageMakerRuntimeClient = session.client("sagemaker-runtime", config=config)
        self.cloudwatch: CloudWatchClient = session.client("cloudwatch", config=config)
        self.logs: CloudWatchLogsClient = session.client("logs", config=config)
        match = _ACCOUNT.match(self.config.role_arn or "")
        account = match.group(1) if match else "default"
        self.limiter = limiter or bucket_for(
            settings.effective_broker_url,
            f"stratus:ratelimit:sagemaker:{account}:{self.region}",
            self.config.api_rate_per_s,
            self.config.api_burst,
        )
        # before-send fires for every HTTP attempt, retries included: each one costs a token.
        self.sm.meta.events.register("before-send.sagemaker", self._take_token)

    def _take_token(self, **_: Any) -> None:
        prometheus.BACKEND_CALLS.labels(backend=self.name).inc()
        self.limiter.acquire(RATE_WAIT_S)

    def _call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """One AWS call; whatever AWS or botocore raises becomes a BackendError."""
        try:
            return fn(*args, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc) from exc

    def _call_unless(
        self, tolerate: Tolerate, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> T | None:
        """One AWS call; None when it failed because the thing already exists (or is missing)."""
        try:
            return fn(*args, **kwargs)
        except ClientError as exc:
            if _already_exists(exc) if tolerate == "exists" else _missing(exc):
                return None
            raise _translate(exc) from exc
        except BotoCoreError as exc:
            raise _translate(exc) from exc

    def _role(self, explicit: str | None) -> str:
        role = explicit or self.config.role_arn
        if not role:
            raise BackendError(
                "no IAM role for SageMaker: set the project's backend_config "
                '{"sagemaker": {"role_arn": ...}} or STRATUS_BACKENDS__SAGEMAKER__ROLE_ARN',
                retryable=False,
            )
        return role

    def submit_training(self, spec: TrainingJobSpec) -> str:
        """CreateTrainingJob; a job of that name already there counts as this submission."""
        image = job_image(spec, self.region)
        request = req.training_job_request(
            spec, image=image, role_arn=self._role(spec.role_arn), region=self.region
        )
        created = self._call_unless("exists", self.sm.create_training_job, **request)
        if created is not None:
            return created["TrainingJobArn"]
        existing = self._call(self.sm.describe_training_job, TrainingJobName=spec.job_name)
        return existing["TrainingJobArn"]

    def describe_jobs(
        self, known: Mapping[str, JobState], changed_since: datetime | None = None
    ) -> Mapping[str, JobStatus]:
        """List what changed (newest first), then describe only the jobs whose state moved."""
        if not known:
            return {}
        params: dict[str, Any] = {
            "NameContains": naming.PREFIX,
            "SortBy": "CreationTime",
            "SortOrder": "Descending",
            "MaxResults": 100,
        }
        if changed_since is not None:
            params["LastModifiedTimeAfter"] = changed_since
        if (oldest := naming.oldest_creation(list(known))) is not None:
            params["CreationTimeAfter"] = oldest
        seen: set[str] = set()
        moved: list[str] = []
        while True:
            page = self._call(self.sm.list_training_jobs, **params)
            for summary in page["TrainingJobSummaries"]:
                name = summary["TrainingJobName"]
                if name in known and name not in seen:
                    seen.add(name)
                    if req.job_state(summary) != known[name]:
                        moved.append(name)
            # Every known job accounted for: older pages cannot hold more of them.
            if not page.get("NextToken") or len(seen) == len(known):
                break
            params["NextToken"] = page["NextToken"]
        statuses = {}
        for name in moved:
            described = self._call_unless(
                "missing", self.sm.describe_training_job, TrainingJobName=name
            )
            if described is not None:
                statuses[name] = req.job_status(described)
        return statuses

    def fetch_training_metrics(self, job_name: str, cursor: str | None) -> MetricPage:  # noqa: ARG002
        """SageMaker delivers final metrics with the describe; live ones are not fetched."""
        return MetricPage(points=(), next_cursor=cursor)

    def stop_training(self, job_name: str) -> None:
        """StopTrainingJob; a finished or unknown job is left as it is."""
        try:
            self._call(self.sm.stop_training_job, TrainingJobName=job_name)
        except BackendError as exc:
            if exc.retryable:
                raise
            # SageMaker refuses to stop a job that is not running; see if that is all it was.
            described = self._call_unless(
                "missing", self.sm.describe_training_job, TrainingJobName=job_name
            )
            if described is not None and req.job_state(described) == JobState.RUNNING:
                raise


if TYPE_CHECKING:
    from app.backends.base import EvaluationBackend, RollingBackend

    _evaluates: type[EvaluationBackend] = SageMakerBackend
    _rolls: type[RollingBackend] = SageMakerBackend
