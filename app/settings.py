"""Typed settings: one pydantic-settings class, env prefix ``STRATUS_``."""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError
from sqlalchemy.engine import make_url

DEV_KEY_PEPPER = "dev-only-pepper-change-me"  # noqa: S105 - refused outside dev below
DEFAULT_DATA_DIR = Path(".stratus")
ROLE_ARN = r"^arn:aws[a-z-]*:iam::\d{12}:role/\S+$"


def _list_from_env(value: object, separator: str) -> object:
    """A JSON list, or a ``separator``-separated string as environment variables carry lists."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        return json.loads(text)
    return [part.strip() for part in text.split(separator) if part.strip()]


class ApiSettings(BaseModel):
    """HTTP edge limits."""

    max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    page_size_default: int = Field(default=50, ge=1, le=1000)
    page_size_max: int = Field(default=500, ge=1, le=10_000)
    idempotency_ttl_hours: int = Field(default=48, ge=24)
    idempotency_lease_seconds: int = Field(default=300, ge=5)


class WorkerSettings(BaseModel):
    """Celery worker and beat behaviour."""

    outbox_relay_interval_s: float = Field(default=2.0, gt=0)
    outbox_batch_size: int = Field(default=100, ge=1, le=10_000)
    outbox_lease_s: int = Field(default=300, ge=5)
    outbox_retry_base_s: int = Field(default=30, ge=1)
    outbox_retry_max_s: int = Field(default=3600, ge=1)
    beat_lease_s: int = Field(default=30, ge=5)
    housekeeping_interval_s: float = Field(default=3600.0, gt=0)
    outbox_retention_days: int = Field(default=7, ge=1)
    task_time_limit_s: int = Field(default=300, ge=10)
    # A task's hold on its outbox message, renewed while it runs; a killed task's hold lapses.
    message_lease_s: int = Field(default=30, ge=2)


class MetricsSettings(BaseModel):
    """Metric ingestion budgets and retention housekeeping."""

    ingest_points_per_s: float = Field(default=50_000.0, ge=0)  # per API key; 0: unlimited
    ingest_burst_points: int = Field(default=100_000, ge=10_000)  # at least one full batch
    batch_id_ttl_hours: int = Field(default=48, ge=1)
    purge_batch_size: int = Field(default=10_000, ge=100, le=1_000_000)
    purge_max_batches: int = Field(default=100, ge=1)


class LocalBackendSettings(BaseModel):
    """The local backend: trains and serves with processes on this host."""

    enabled: bool = True
    work_dir: Path | None = None  # default: DATA_DIR/local
    poll_interval_s: float = Field(default=2.0, gt=0)
    stop_grace_s: float = Field(default=10.0, ge=0)  # SIGTERM to SIGKILL, for hosts and replicas
    drain_timeout_s: float = Field(default=30.0, gt=0)  # in-flight requests of a drained replica
    replica_start_timeout_s: float = Field(default=60.0, gt=0)  # model load before "failed"
    invoke_timeout_s: float = Field(default=60.0, gt=0)  # one request to a replica
    # Directories under which runs and model versions may name host paths; none: no host paths.
    host_roots: Annotated[list[Path], NoDecode] = []

    @field_validator("host_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: object) -> object:
        return _list_from_env(value, os.pathsep)

    @field_validator("host_roots")
    @classmethod
    def _absolute_roots(cls, value: list[Path]) -> list[Path]:
        relative = [str(p) for p in value if not p.is_absolute()]
        if relative:
            raise ValueError(f"host roots must be absolute paths: {relative}")
        return value

    # When Stratus runs as root, each job and each endpoint's replicas run under a uid of
    # their own from [sandbox_uid, sandbox_uid + sandbox_uid_count), gid likewise.
    sandbox_uid: int = Field(default=65534, ge=1)
    sandbox_gid: int = Field(default=65534, ge=1)
    sandbox_uid_count: int = Field(default=1000, ge=1, le=1_000_000)
    sandbox_namespaces: bool = True  # a private mount namespace; false: uid and file modes only
    sandbox_cpu_seconds: int = Field(default=0, ge=0)  # RLIMIT_CPU per process; 0: unlimited
    sandbox_memory_bytes: int = Field(default=16 * 1024**3, ge=0)  # RLIMIT_AS; 0: unlimited
    sandbox_open_files: int = Field(default=4096, ge=0)  # RLIMIT_NOFILE; 0: unlimited
    sandbox_processes: int = Field(default=1024, ge=0)  # RLIMIT_NPROC per uid; 0: unlimited
    # A sandboxed training job's network: "none", a namespace of the job's own where only its
    # hosts' loopback works; "host", the host's (and whatever listens on its loopback).
    sandbox_network: Literal["none", "host"] = "none"
    metric_regex_timeout_s: float = Field(default=1.0, gt=0, le=60)  # CPU per rule per line
    allow_in_prod: bool = False  # acknowledge running user code on the API/worker hosts


class SageMakerSettings(BaseModel):
    """The AWS SageMaker backend (boto3; credentials from the usual AWS chain)."""

    enabled: bool = False
    region: str = "us-east-1"
    role_arn: str | None = Field(default=None, pattern=ROLE_ARN)
    # Roles a project owner may choose for the project (role_arn above is always allowed).
    allowed_role_arns: Annotated[list[str], NoDecode] = []
    endpoint_url: str | None = None  # a VPC endpoint, or a SageMaker-compatible test server
    inference_image: str | None = None  # default serving image when a model names none
    api_rate_per_s: float = Field(default=10.0, gt=0)  # shared by every worker per region
    api_burst: int = Field(default=20, ge=1)
    poll_interval_s: float = Field(default=15.0, gt=0)
    poll_jitter_s: float = Field(default=3.0, ge=0)
    metrics_period_s: int = Field(default=60, ge=1)

    @field_validator("role_arn", "endpoint_url", "inference_image", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # Compose files pass ${VAR:-} as "" when the variable is not set.
        return None if value == "" else value

    @field_validator("allowed_role_arns", mode="before")
    @classmethod
    def _split_roles(cls, value: object) -> object:
        return _list_from_env(value, ",")

    @field_validator("allowed_role_arns")
    @classmethod
    def _role_shape(cls, value: list[str]) -> list[str]:
        bad = [arn for arn in value if not re.match(ROLE_ARN, arn)]
        if bad:
            raise ValueError(f"not IAM role ARNs: {bad}")
        return value

    @property
    def role_allow_list(self) -> frozenset[str]:
        """Roles a project may use: the allow-list and the server's default role."""
        return frozenset([*self.allowed_role_arns, *([self.role_arn] if self.role_arn else [])])


class CloudApiSettings(BaseModel):
    """What every REST-only cloud backend shares: pacing, polling, timeouts."""

    enabled: bool = False
    base_url: str | None = None  # the service's API root; a test server's in tests
    access_token: SecretStr | None = None  # a static token instead of the credential exchange
    api_rate_per_s: float = Field(default=10.0, gt=0)  # shared by every worker
    api_burst: int = Field(default=20, ge=1)
    poll_interval_s: float = Field(default=15.0, gt=0)
    poll_jitter_s: float = Field(default=3.0, ge=0)
    metrics_period_s: int = Field(default=60, ge=1)
    request_timeout_s: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=5, ge=1, le=20)
    page_size: int = Field(default=100, ge=1, le=1000)  # jobs per list page
    # create_endpoint waits this long for the quick operations (endpoint, model) it depends on.
    operation_timeout_s: float = Field(default=120.0, gt=0)
    serving_image: str | None = None  # container serving a model that names no image

    @field_validator("base_url", "access_token", "serving_image", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    def missing(self) -> list[str]:
        """Settings this backend cannot work without that are unset (names, not values)."""
        return []

    def unconfigured(self, name: str) -> str | None:
        """Why the ``name`` backend cannot work with these settings, or None."""
        missing = self.missing()
        if not missing:
            return None
        prefix = f"STRATUS_BACKENDS__{name.upper()}__"
        return f"the {name} backend is not configured: set " + ", ".join(
            prefix + m for m in missing
        )


class VertexSettings(CloudApiSettings):
    """Google Cloud Vertex AI over its REST API (``aiplatform.googleapis.com/v1``)."""

    project: str | None = None
    location: str = "us-central1"
    credentials_file: Path | None = None  # a service-account key (JSON)
    token_url: str | None = None  # default: the key file's token_uri
    service_account: str | None = None  # the identity jobs and models run as

    def missing(self) -> list[str]:
        needs = [] if self.project else ["PROJECT"]
        if not (self.access_token or self.credentials_file):
            needs.append("CREDENTIALS_FILE (or ACCESS_TOKEN)")
        return needs


class AzureMLSettings(CloudApiSettings):
    """Azure Machine Learning over Azure Resource Manager (Microsoft.MachineLearningServices)."""

    subscription_id: str | None = None
    resource_group: str | None = None
    workspace: str | None = None
    region: str = "eastus"
    api_version: str = "2024-04-01"
    authority_url: str = "https://login.microsoftonline.com"
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    compute: str | None = None  # the compute cluster jobs run on (its name in the workspace)
    environment: str | None = None  # an environment asset id for jobs that name no image

    def missing(self) -> list[str]:
        needs = [
            name.upper()
            for name in ("subscription_id", "resource_group", "workspace", "compute")
            if not getattr(self, name)
        ]
        if not (self.access_token or (self.tenant_id and self.client_id and self.client_secret)):
            needs.append("TENANT_ID, CLIENT_ID and CLIENT_SECRET (or ACCESS_TOKEN)")
        return needs


class WatsonxSettings(CloudApiSettings):
    """IBM watsonx.ai (Watson Machine Learning v4 API) in a deployment space."""

    space_id: str | None = None
    api_key: SecretStr | None = None
    iam_url: str = "https://iam.cloud.ibm.com/identity/token"
    version: str = "2024-05-01"  # the API's required ``version`` date
    software_spec: str = "runtime-24.1-py3.11"
    model_type: str = "scikit-learn_1.3"

    def missing(self) -> list[str]:
        needs = [] if self.space_id else ["SPACE_ID"]
        if not (self.access_token or self.api_key):
            needs.append("API_KEY (or ACCESS_TOKEN)")
        return needs


class BackendSettings(BaseModel):
    """Compute backends, and the price table used for cost."""

    local: LocalBackendSettings = LocalBackendSettings()
    sagemaker: SageMakerSettings = SageMakerSettings()
    vertex: VertexSettings = VertexSettings()
    azureml: AzureMLSettings = AzureMLSettings()
    watsonx: WatsonxSettings = WatsonxSettings()
    price_file: Path | None = None  # JSON {instance_type: usd_per_hour}, over the defaults


class ArtifactSettings(BaseModel):
    """The artifact store (code bundles) and the limits an uploaded bundle must meet."""

    # Unset: a directory under the data dir; production: an S3 prefix, s3://bucket/prefix.
    store_uri: str | None = Field(
        default=None, pattern=r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/\S*)?|file:///\S*|/\S*)$"
    )
    bundle_max_bytes: int = Field(default=200 * 1024 * 1024, ge=1024)  # compressed, as sent
    bundle_max_files: int = Field(default=10_000, ge=1)
    bundle_max_unpacked_bytes: int = Field(default=1024**3, ge=1024)

    @field_validator("store_uri", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value


class OptimizerSettings(BaseModel):
    """The efficiency optimizer's periodic pass."""

    interval_s: float = Field(default=60.0, ge=5)
    window_s: float = Field(default=3600.0, ge=60)  # metric history each decision reads


class QuotaSettings(BaseModel):
    """Per-project limits that hold: over one, a request is refused and says which setting."""

    active_runs_per_project: int = Field(default=100, ge=1)  # pending..stopping
    deployment_instances_per_project: int = Field(default=64, ge=1)  # desired, live deployments
    metric_names_per_subject: int = Field(default=1000, ge=1)  # distinct names per run/deployment


class UiSettings(BaseModel):
    """The browser console at /ui/."""

    session_hours: float = Field(default=12.0, gt=0, le=24 * 30)  # sign-in lifetime
    series_buckets: int = Field(default=200, ge=10, le=2000)  # points per chart line
    poll_interval_s: float = Field(default=5.0, ge=1, le=300)  # live updates of open pages


class WebhookSettings(BaseModel):
    """Signed webhook deliveries: retries, the give-up window and where they may go."""

    # Refuse targets that resolve to private, loopback, link-local or metadata addresses.
    allow_private_targets: bool = False
    timeout_s: float = Field(default=10.0, gt=0, le=60)  # one delivery attempt, connect to end
    retry_base_s: float = Field(default=5.0, gt=0)  # first retry; doubles each attempt
    retry_max_s: float = Field(default=3600.0, gt=0)  # longest wait between two attempts
    retry_window_s: float = Field(default=86_400.0, gt=0)  # a delivery fails after this long
    disable_after_s: float = Field(default=86_400.0, gt=0)  # an endpoint failing this long
    secret_grace_s: float = Field(default=86_400.0, ge=0)  # old secret still signs after rotation


class ObservabilitySettings(BaseModel):
    """Live streams, Prometheus metrics and logs."""

    # /metrics answers loopback callers freely; others need `Authorization: Bearer <token>`.
    metrics_token: str | None = None
    stream_poll_s: float = Field(default=1.0, gt=0, le=60)  # how often a stream looks for news
    stream_keepalive_s: float = Field(default=15.0, gt=0)  # a comment line when nothing happened
    stream_max_s: float = Field(default=3600.0, gt=0)  # a stream ends; the client resumes
    # A newer event waits this long for an older id still in flight in another transaction.
    stream_settle_s: float = Field(default=5.0, ge=0, le=60)
    json_logs: bool = False  # one JSON object a line, with request and principal ids

    @field_validator("metrics_token", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value


class ServingSettings(BaseModel):
    """The invocation path: what each API process remembers to route without the database."""

    # How long a caller's route to a deployment is reused before the database is asked again:
    # the bound on how late a deployment's deletion, a status change or a lost membership
    # reaches invocations on another API process. 0: ask on every request.
    route_ttl_s: float = Field(default=2.0, ge=0, le=60)
    # With the database unreachable, invocations to a deployment that was serving keep using
    # its last known route for this long (0: refuse them with 503 like every other route).
    stale_route_max_s: float = Field(default=300.0, ge=0)
    # Connections each API process keeps to replicas of local endpoints.
    replica_max_connections: int = Field(default=64, ge=1, le=10_000)
    # What a 503 for an unreachable database or broker asks the client to wait.
    retry_after_s: int = Field(default=5, ge=1, le=3600)


class Settings(BaseSettings):
    """All Stratus configuration. Nested groups use ``__``: ``STRATUS_API__MAX_BODY_BYTES``."""

    model_config = SettingsConfigDict(
        env_prefix="STRATUS_", env_nested_delimiter="__", extra="ignore"
    )

    env: Literal["dev", "test", "prod"] = "dev"
    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str | None = None
    broker_url: str | None = None
    key_pepper: str = DEV_KEY_PEPPER
    log_level: str = "INFO"
    api: ApiSettings = ApiSettings()
    worker: WorkerSettings = WorkerSettings()
    backends: BackendSettings = BackendSettings()
    metrics: MetricsSettings = MetricsSettings()
    optimizer: OptimizerSettings = OptimizerSettings()
    artifacts: ArtifactSettings = ArtifactSettings()
    quotas: QuotaSettings = QuotaSettings()
    ui: UiSettings = UiSettings()
    webhooks: WebhookSettings = WebhookSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    serving: ServingSettings = ServingSettings()

    @field_validator("database_url")
    @classmethod
    def _parsable_url(cls, value: str | None) -> str | None:
        # The URL may hold a password: the message never repeats it.
        if value:
            try:
                make_url(value)
            except Exception:
                raise ValueError(
                    "not a database URL (expected e.g. postgresql+psycopg://user@host/db)"
                ) from None
        return value

    @model_validator(mode="after")
    def _refuse_unsafe_defaults(self) -> Settings:
        if self.env == "dev":
            return self
        problems = []
        if self.key_pepper == DEV_KEY_PEPPER or len(self.key_pepper) < 16:
            problems.append("STRATUS_KEY_PEPPER must be set to a secret of 16+ characters")
        if self.env == "prod":
            if not self.database_url or self.database_url.startswith("sqlite"):
                problems.append("STRATUS_DATABASE_URL must point at PostgreSQL")
            if not self.broker_url:
                problems.append("STRATUS_BROKER_URL must be set (e.g. redis://host:6379/0)")
            local = self.backends.local
            if local.enabled and not local.allow_in_prod:
                problems.append(
                    "the local backend runs user code on this host: disable it"
                    " (STRATUS_BACKENDS__LOCAL__ENABLED=false) or acknowledge it"
                    " (STRATUS_BACKENDS__LOCAL__ALLOW_IN_PROD=true)"
                )
        if problems:
            raise ValueError(f"unsafe settings for env={self.env}: " + "; ".join(problems))
        return self

    @property
    def effective_database_url(self) -> str:
        """The database URL; the embedded default is a SQLite file in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'stratus.db').resolve()}"

    @property
    def effective_broker_url(self) -> str:
        """The broker URL; the embedded default is kombu's SQLAlchemy transport on SQLite."""
        if self.broker_url:
            return self.broker_url
        return f"sqla+sqlite:///{(self.data_dir / 'broker.db').resolve()}"


class InvalidSettings(ValueError):
    """Settings that do not validate, described without the values given (they may be secrets)."""


def describe_errors(exc: ValidationError) -> str:
    """Each problem as ``STRATUS_<FIELD>: message``, never with the input value."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False, include_context=False):
        loc = "__".join(str(p) for p in error["loc"] if isinstance(p, str)).upper()
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"STRATUS_{loc}: {message}" if loc else message)
    return "; ".join(parts)


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment; a bad value raises ``InvalidSettings`` without echoing it."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        # ``from None``: a traceback must not print the original error, which quotes the input.
        raise InvalidSettings(f"invalid configuration: {describe_errors(exc)}") from None
    except SettingsError as exc:  # an unparsable nested value; its text names only the field
        raise InvalidSettings(f"invalid configuration: {exc}") from None


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return load_settings()
