"""A deployment's long load history for the optimizer's pattern scan, and the scans kept.

The scan for repeating patterns reads up to ``HISTORY`` of metrics downsampled to
``BUCKET`` buckets (the metrics store's series query, one per metric); it only changes hourly,
so each process keeps the latest scan per deployment and reads the long history only when that
scan is due again.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from app.domain.deployments.models import Deployment
from app.domain.metrics import aggregates
from app.optimizer import Observation
from app.optimizer.seasonal import SeasonScan

HISTORY = timedelta(days=14)
BUCKET = timedelta(minutes=5)
# Scans kept per process; the oldest go first (a scan is cheap to redo, an hour late at worst).
MAX_SCANS = 20_000
_scans: OrderedDict[uuid.UUID, SeasonScan] = OrderedDict()


def cached_scan(deployment_id: uuid.UUID) -> SeasonScan | None:
    """The latest scan kept for this deployment in this process, if any."""
    return _scans.get(deployment_id)


def keep_scan(deployment_id: uuid.UUID, scan: SeasonScan) -> None:
    """Keep ``scan`` as this deployment's latest."""
    _scans[deployment_id] = scan
    _scans.move_to_end(deployment_id)
    while len(_scans) > MAX_SCANS:
        _scans.popitem(last=False)


def forget_scans() -> None:
    """Drop every kept scan (tests, or a process that wants a clean start)."""
    _scans.clear()


def downsampled(
    session: Session, deployment: Deployment, until: datetime, period_s: float
) -> list[Observation]:
    """One observation per 5-minute bucket over the ``HISTORY`` before ``until``: mean offered
    load, mean p95 and mean instance count of the bucket's metric periods with traffic."""
    # Buckets on whole multiples of BUCKET, each stamped at its middle: the pattern scan's grid
    # puts it, and the recent per-period points, in the same phase.
    width = BUCKET.total_seconds()
    first = (until - HISTORY).timestamp() // width * width
    since = datetime.fromtimestamp(first, tz=UTC)
    buckets = int((until - since) / BUCKET) + 1

    def series(name: str) -> dict[int, float]:
        rows = aggregates.series(session, deployment.id, name, since, BUCKET, buckets, since, until)
        return {b.index: b.mean for b in rows}

    load, p95, instances = series("invocations"), series("latency_p95_ms"), series("instances")
    out = []
    for index in sorted(load.keys() & p95.keys()):
        if load[index] <= 0:
            continue
        out.append(
            Observation(
                t_s=first + width * (index + 0.5),
                instances=max(1, round(instances.get(index, deployment.current_instances))),
                load_rps=load[index] / period_s,
                p95_ms=p95[index],
            )
        )
    return out
