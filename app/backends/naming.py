"""Names of backend resources, derived from Stratus ids so every retry targets the same one.

SageMaker names: at most 63 characters of ``[a-zA-Z0-9-]``, starting with an alphanumeric.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

PREFIX = "stratus"
# Job names carry their run's UUIDv7, stamped before the job existed; the slack covers clock
# differences between this host and the cloud.
CREATION_SLACK = timedelta(hours=1)


def job_name(run_id: uuid.UUID) -> str:
    """The training job of a run (``stratus-r-<32 hex>``, 42 characters)."""
    return f"{PREFIX}-r-{run_id.hex}"


EVALUATION_PREFIX = f"{PREFIX}-e-"


def evaluation_job_name(evaluation_id: uuid.UUID) -> str:
    """The batch job of an evaluation (``stratus-e-<32 hex>``, 42 characters)."""
    return f"{EVALUATION_PREFIX}{evaluation_id.hex}"


def endpoint_name(deployment_id: uuid.UUID) -> str:
    """The endpoint of a deployment (``stratus-d-<32 hex>``, 42 characters)."""
    return f"{PREFIX}-d-{deployment_id.hex}"


def run_id_of(job: str) -> uuid.UUID | None:
    """The run id a job name was derived from, or None for a foreign job."""
    head = f"{PREFIX}-r-"
    if not job.startswith(head):
        return None
    try:
        return uuid.UUID(hex=job[len(head) :])
    except ValueError:
        return None


def oldest_creation(names: Sequence[str]) -> datetime | None:
    """A time before which none of these jobs can have been created (None: unknown)."""
    stamps = []
    for name in names:
        run_id = run_id_of(name)
        if run_id is None or run_id.version != 7:
            return None
        stamps.append(datetime.fromtimestamp((run_id.int >> 80) / 1000, UTC))
    return min(stamps) - CREATION_SLACK if stamps else None
