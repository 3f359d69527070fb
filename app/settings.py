"""Typed settings: one pydantic-settings class, env prefix ``STRATUS_``."""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
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


class BackendSettings(BaseModel):
    """Compute backends, and the price table used for cost."""

    local: LocalBackendSettings = LocalBackendSettings()
    sagemaker: SageMakerSettings = SageMakerSettings()
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
