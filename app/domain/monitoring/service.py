"""Gauge rows for the Prometheus scrape, read from the database."""

from __future__ import annotations

import hmac
import ipaddress
from datetime import UTC

from sqlalchemy.orm import Session

from app.clock import utcnow
from app.domain.deployments.states import DeploymentStatus
from app.domain.monitoring import repository
from app.domain.runs.states import RunStatus
from app.errors import Forbidden, Unauthorized
from app.observability import prometheus
from app.settings import Settings

Rows = list[tuple[dict[str, str], float]]


def levels(session: Session) -> dict[str, Rows]:
    """Runs by status, deployments by status and instances, outbox backlog and age."""
    runs = repository.runs_by_status(session)
    deployments = repository.deployments_by_status(session)
    backlog, oldest = repository.outbox_backlog(session)
    live = [s for s in DeploymentStatus if s != DeploymentStatus.DELETED]
    instances: Rows = []
    for kind, index in (("desired", 1), ("current", 2)):
        total = sum(deployments.get(s, (0, 0, 0))[index] for s in live)
        instances.append(({"kind": kind}, float(total)))
    age = 0.0
    if oldest is not None:
        oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
        age = max(0.0, (utcnow() - oldest).total_seconds())
    return {
        "stratus_runs": [({"status": s.value}, float(runs.get(s, 0))) for s in RunStatus],
        "stratus_deployments": [
            ({"status": s.value}, float(deployments.get(s, (0, 0, 0))[0])) for s in DeploymentStatus
        ],
        "stratus_deployment_instances": instances,
        "stratus_outbox_backlog": [({}, float(backlog))],
        "stratus_outbox_oldest_age_seconds": [({}, age)],
    }


def _loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "testclient"  # Starlette's in-process test client


def scrape(
    session: Session, client_host: str | None, authorization: str | None, settings: Settings
) -> tuple[bytes, str]:
    """The Prometheus exposition; open to loopback callers, else only with the metrics token
    (STRATUS_OBSERVABILITY__METRICS_TOKEN) as a bearer credential."""
    token = settings.observability.metrics_token
    given = (authorization or "").partition(" ")
    presented = given[2].strip() if given[0].lower() == "bearer" else ""
    if token and presented:
        if not hmac.compare_digest(presented.encode(), token.encode()):
            raise Unauthorized("The metrics token is not valid.")
    elif not _loopback(client_host):
        if token:
            raise Unauthorized("Send the metrics token as 'Authorization: Bearer <token>'.")
        raise Forbidden(
            "Metrics are served to loopback callers only; set "
            "STRATUS_OBSERVABILITY__METRICS_TOKEN to scrape from elsewhere."
        )
    return prometheus.exposition(lambda: levels(session))
