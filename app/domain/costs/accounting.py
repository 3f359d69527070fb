"""Instance-seconds and their price: pure functions over what runs and deployments record."""

from __future__ import annotations

from datetime import datetime

from app.backends.prices import cost_usd
from app.clock import utcnow


def run_instance_seconds(
    billable_seconds: float | None,
    started_at: datetime | None,
    ended_at: datetime | None,
    instance_count: int,
    now: datetime | None = None,
) -> float:
    """What the backend billed, or, until it says, wall time since start x instances."""
    if billable_seconds is not None:
        return billable_seconds
    if started_at is None:
        return 0.0
    end = ended_at or now or utcnow()
    return max(0.0, (end - started_at).total_seconds()) * instance_count


def deployment_instance_seconds(
    accumulated: float, current_instances: int, since: datetime | None, now: datetime | None = None
) -> float:
    """Instance-seconds served so far: closed intervals plus the open one."""
    if since is None:
        return accumulated
    open_s = max(0.0, ((now or utcnow()) - since).total_seconds())
    return accumulated + current_instances * open_s


def priced(instance_type: str, instance_seconds: float) -> float | None:
    """USD for ``instance_seconds`` of ``instance_type``, rounded to cents' hundredths."""
    usd = cost_usd(instance_type, instance_seconds)
    return None if usd is None else round(usd, 4)
