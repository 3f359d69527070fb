"""A deployment's life on its backend: the service side of the endpoint tasks and pollers.

The controller sets absolute targets: whenever the endpoint serves a count other than
``desired_instances``, the deployment goes to ``updating`` and a resize is queued.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app.backends.base import EndpointSpec, EndpointState, EndpointStatus, MetricSample
from app.backends.naming import endpoint_name
from app.clock import utcnow
from app.domain.deployments import repository
from app.domain.deployments.models import Deployment
from app.domain.deployments.service import transition
from app.domain.deployments.states import DeploymentStatus
from app.domain.metrics import repository as metrics_repo
from app.domain.model_versions import repository as models_repo
from app.domain.outbox import service as outbox
from app.domain.projects import repository as projects_repo
from app.domain.quotas import service as quotas

S = DeploymentStatus
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EndpointPlan:
    deployment_id: uuid.UUID
    backend: str
    spec: EndpointSpec


def plan_create(
    session: Session, deployment_id: uuid.UUID, default_role: str | None = None
) -> EndpointPlan | None:
    """What to create for a deployment still ``creating``; None when nothing to do."""
    deployment = repository.get(session, deployment_id)
    if deployment is None or deployment.status != S.CREATING:
        return None
    return _plan(session, deployment, default_role)


def plan_roll(
    session: Session, deployment_id: uuid.UUID, default_role: str | None = None
) -> EndpointPlan | None:
    """What a deployment's endpoint should serve now that it points at another version:
    an in-service deployment goes to ``updating`` for the roll; None when nothing to do."""
    deployment = repository.get(session, deployment_id)
    if deployment is None or deployment.status not in (S.IN_SERVICE, S.UPDATING):
        return None
    if deployment.status == S.IN_SERVICE and not transition(
        session, deployment.id, S.IN_SERVICE, S.UPDATING, status_reason="rolling to a new version"
    ):
        return None
    return _plan(session, deployment, default_role)


def _plan(
    session: Session, deployment: Deployment, default_role: str | None
) -> EndpointPlan | None:
    model = models_repo.get(session, deployment.model_version_id)
    if model is None:
        return None
    spec = EndpointSpec(
        endpoint_name=endpoint_name(deployment.id),
        artifact_uri=model.artifact_uri,
        instance_type=deployment.instance_type,
        instance_count=deployment.desired_instances,
        framework=model.framework,
        role_arn=projects_repo.backend_option(
            session, deployment.project_id, deployment.backend, "role_arn"
        )
        or default_role,
        tags={
            "stratus:project-id": str(deployment.project_id),
            "stratus:deployment-id": str(deployment.id),
        },
    )
    return EndpointPlan(deployment.id, deployment.backend, spec)


def capacity_values(deployment: Deployment, current: int, now: datetime) -> dict[str, Any]:
    """Columns for a new serving count, closing the cost interval of the old one."""
    values: dict[str, Any] = {"current_instances": current, "capacity_since": now}
    if deployment.capacity_since is not None:
        served = max(0.0, (now - deployment.capacity_since).total_seconds())
        values["instance_seconds"] = (
            deployment.instance_seconds + deployment.current_instances * served
        )
    return values


def record_created(session: Session, deployment_id: uuid.UUID, status: EndpointStatus) -> None:
    """Keep the endpoint's id, then apply what it reported."""
    deployment = repository.get(session, deployment_id)
    if deployment is None:
        return
    if deployment.external_id != status.external_id:
        deployment.external_id = status.external_id
        session.flush()
    apply_endpoint_status(session, deployment_id, status)


def record_failed(session: Session, deployment_id: uuid.UUID, reason: str) -> None:
    """The backend refused for good."""
    deployment = repository.get(session, deployment_id)
    if deployment is not None and deployment.status in (
        S.CREATING,
        S.IN_SERVICE,
        S.UPDATING,
        S.DELETING,
    ):
        transition(
            session, deployment.id, S(deployment.status), S.FAILED, status_reason=reason[:4000]
        )


def apply_endpoint_status(session: Session, deployment_id: uuid.UUID, ep: EndpointStatus) -> bool:
    """Move the deployment to what the backend reports, then reconcile the instance count."""
    deployment = repository.get(session, deployment_id)
    if deployment is None:
        return False
    current = S(deployment.status)
    gone = ep.state == EndpointState.GONE
    capacity = capacity_values(deployment, 0 if gone else ep.current_instances, utcnow())
    if gone:
        if current == S.DELETING:
            return transition(session, deployment.id, current, S.DELETED, **capacity)
        if current in (S.IN_SERVICE, S.UPDATING):
            reason = "the endpoint disappeared from the backend"
            return transition(
                session, deployment.id, current, S.FAILED, status_reason=reason, **capacity
            )
        return False  # creating: the endpoint may not exist yet
    if ep.state == EndpointState.FAILED:
        if current not in (S.CREATING, S.IN_SERVICE, S.UPDATING):
            return False
        reason = (ep.failure_reason or "the endpoint failed")[:4000]
        return transition(
            session, deployment.id, current, S.FAILED, status_reason=reason, **capacity
        )
    moved = False
    if ep.state == EndpointState.IN_SERVICE and current in (S.CREATING, S.UPDATING):
        # Served at some count: in service; reconcile() queues a resize if it is not desired.
        if not transition(session, deployment.id, current, S.IN_SERVICE, **capacity):
            return False
        moved = True
    elif ep.current_instances != deployment.current_instances and current != S.DELETED:
        moved = repository.guarded_update(session, deployment.id, current, capacity)
    return reconcile(session, deployment.id) or moved


def reconcile(session: Session, deployment_id: uuid.UUID) -> bool:
    """Resize an in-service endpoint serving other than desired (absolute target); True if so."""
    deployment = repository.get(session, deployment_id)
    if deployment is None:
        return False
    session.refresh(deployment)  # guarded updates bypass the identity map
    if deployment.status != S.IN_SERVICE:
        return False
    if deployment.current_instances == deployment.desired_instances:
        return False
    if not transition(session, deployment.id, S.IN_SERVICE, S.UPDATING):
        return False
    outbox.enqueue(session, outbox.DEPLOYMENT_UPDATE, deployment_id=str(deployment.id))
    return True


def watched(
    session: Session, backend: str, limit: int, after: uuid.UUID | None = None
) -> dict[str, uuid.UUID]:
    """Deployments whose endpoints the poller watches, by endpoint name (in id order)."""
    rows = repository.list_watched(session, backend, limit, after)
    return {endpoint_name(d.id): d.id for d in rows}


def serving(
    session: Session, backend: str, limit: int, after: uuid.UUID | None = None
) -> dict[str, tuple[uuid.UUID, datetime | None]]:
    """Serving deployments by endpoint name (in id order), with how far their metrics were
    pulled."""
    return {
        endpoint_name(d.id): (d.id, d.metrics_synced_until)
        for d in repository.list_serving(session, backend, limit, after)
    }


def store_endpoint_metrics(
    session: Session, deployment_id: uuid.UUID, samples: Sequence[MetricSample], until: datetime
) -> int:
    """Store pulled endpoint metrics and move the deployment's sync point, together."""
    deployment = repository.get(session, deployment_id)
    if deployment is None:
        return 0
    if samples:
        allowed, dropped = quotas.admit_metric_names(
            session, deployment.id, {s.name for s in samples}
        )
        if dropped:
            note = quotas.dropped_note(dropped)
            logger.warning("deployment %s: %s", deployment.id, note)
            deployment.status_reason = note
            samples = [s for s in samples if s.name in allowed]
        metrics_repo.add_many(
            session,
            deployment.project_id,
            "deployment",
            deployment.id,
            [(s.name, None, s.timestamp, s.value) for s in samples],
        )
    deployment.metrics_synced_until = until
    return len(samples)
