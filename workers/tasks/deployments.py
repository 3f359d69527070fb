"""Deployment tasks: create, resize and delete endpoints (woken by the outbox relay), and the
per-backend pollers that follow endpoint status and pull endpoint metrics (beat).

Backend calls happen with no transaction open; results are applied with guarded updates.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from app.backends.base import Backend, BackendError, EndpointStatus, rolling_backend
from app.backends.naming import endpoint_name
from app.backends.registry import (
    get_backend,
    metrics_period_s,
    poll_settings,
    unavailable_reason,
)
from app.clock import utcnow
from app.db import unit_of_work
from app.domain.deployments import lifecycle
from app.domain.deployments import repository as deployments_repository
from app.domain.deployments import service as deployments_service
from app.domain.deployments.states import DeploymentStatus
from app.domain.outbox import service as outbox
from app.settings import get_settings
from workers.celery_app import celery_app
from workers.tasks.work import acknowledge, defer, exclusive, held, payload_id, settle_error

logger = logging.getLogger(__name__)
S = DeploymentStatus
WATCH_LIMIT = 5000
# How far back the first metrics pull of a deployment reaches.
FIRST_PULL = timedelta(minutes=10)


def _load(
    message_id: int, expected: DeploymentStatus, verb: str
) -> tuple[Backend, uuid.UUID] | None:
    """The backend for a message's deployment in ``expected``; settles the message otherwise."""
    with unit_of_work() as session:
        deployment_id = payload_id(session, message_id, "deployment_id")
        if deployment_id is None:
            return None
        deployment = deployments_repository.get(session, deployment_id)
        if deployment is None or deployment.status != expected:
            outbox.acknowledge(session, message_id)
            return None
        backend = get_backend(deployment.backend)
        if backend is None:
            waiting = f"the deployment stays {deployment.status} and will be {verb} when one is"
            reason = unavailable_reason(deployment.backend, waiting)
            deployments_service.record_backend_unavailable(session, deployment.id, reason)
            defer(session, message_id, reason)
            return None
        return backend, deployment.id


@celery_app.task(name="stratus.deployments.create")
def create_deployment(message_id: int) -> None:
    """Create the endpoint of a deployment in ``creating``."""
    with exclusive(message_id) as held:
        if held:
            _create(message_id)


def _create(message_id: int) -> None:
    loaded = _load(message_id, S.CREATING, "created")
    if loaded is None:
        return
    backend, deployment_id = loaded
    with unit_of_work() as session:
        default_role = get_settings().backends.sagemaker.role_arn
        plan = lifecycle.plan_create(session, deployment_id, default_role)
    if plan is None:
        acknowledge(message_id)
        return
    try:
        status = backend.create_endpoint(plan.spec)
    except BackendError as error:
        if settle_error(message_id, error):
            with unit_of_work() as session:
                lifecycle.record_failed(session, plan.deployment_id, str(error))
                outbox.acknowledge(session, message_id)
        return
    with unit_of_work() as session:
        lifecycle.record_created(session, plan.deployment_id, status)
        outbox.acknowledge(session, message_id)


@celery_app.task(name="stratus.deployments.update")
def update_deployment(message_id: int) -> None:
    """Set the endpoint of a deployment in ``updating`` to its desired instance count."""
    with exclusive(message_id) as holding:
        if holding:
            _update(message_id)


def _update(message_id: int) -> None:
    loaded = _load(message_id, S.UPDATING, "resized")
    if loaded is None:
        return
    backend = loaded[0]
    with unit_of_work() as session:
        deployment_id = payload_id(session, message_id, "deployment_id")
        deployment = deployments_repository.get(session, deployment_id) if deployment_id else None
        if deployment is None:
            return
        name, desired, dep_id = (
            endpoint_name(deployment.id),
            deployment.desired_instances,
            deployment.id,
        )
    try:
        status = backend.update_capacity(name, desired)
    except BackendError as error:
        if settle_error(message_id, error):
            with unit_of_work() as session:
                lifecycle.record_failed(session, dep_id, str(error))
                outbox.acknowledge(session, message_id)
        return
    with unit_of_work() as session:
        lifecycle.apply_endpoint_status(session, dep_id, status)
        outbox.acknowledge(session, message_id)


ROLL_WAIT_S = 5.0


@celery_app.task(name="stratus.deployments.roll")
def roll_deployment(message_id: int) -> None:
    """Switch a deployment's endpoint to the model version it now points at."""
    with exclusive(message_id) as holding:
        if holding:
            _roll(message_id)


def _roll(message_id: int) -> None:
    with unit_of_work() as session:
        deployment_id = payload_id(session, message_id, "deployment_id")
        deployment = deployments_repository.get(session, deployment_id) if deployment_id else None
        if deployment is None:
            if deployment_id is not None:
                outbox.acknowledge(session, message_id)
            return
        if deployment.status == S.CREATING:  # roll once it is up (it may have the old model)
            outbox.retry_after(session, message_id, ROLL_WAIT_S, "waiting for the endpoint")
            return
        backend = get_backend(deployment.backend)
        if backend is None:
            waiting = "the deployment rolls to its new version when one is"
            defer(session, message_id, unavailable_reason(deployment.backend, waiting))
            return
        default_role = get_settings().backends.sagemaker.role_arn
        plan = lifecycle.plan_roll(session, deployment.id, default_role)
        if plan is None:
            outbox.acknowledge(session, message_id)
            return
    try:
        status = rolling_backend(backend).update_endpoint_model(plan.spec)
    except BackendError as error:
        if settle_error(message_id, error):
            with unit_of_work() as session:
                lifecycle.record_failed(session, plan.deployment_id, str(error))
                outbox.acknowledge(session, message_id)
        return
    with unit_of_work() as session:
        lifecycle.apply_endpoint_status(session, plan.deployment_id, status)
        outbox.acknowledge(session, message_id)


@celery_app.task(name="stratus.deployments.delete")
def delete_deployment(message_id: int) -> None:
    """Delete the endpoint of a deployment in ``deleting``."""
    with exclusive(message_id) as holding:
        if holding:
            _delete(message_id)


def _delete(message_id: int) -> None:
    loaded = _load(message_id, S.DELETING, "deleted")
    if loaded is None:
        return
    backend, deployment_id = loaded
    name = endpoint_name(deployment_id)
    try:
        backend.delete_endpoint(name)
        statuses = backend.describe_endpoints([name])
    except BackendError as error:
        if settle_error(message_id, error):
            with unit_of_work() as session:
                lifecycle.record_failed(session, deployment_id, str(error))
                outbox.acknowledge(session, message_id)
        return
    with unit_of_work() as session:
        if name in statuses:
            lifecycle.apply_endpoint_status(session, deployment_id, statuses[name])
        outbox.acknowledge(session, message_id)


@celery_app.task(name="stratus.deployments.schedule_poll")
def schedule_poll(backend_name: str) -> None:
    """Queue one endpoint poll of a backend after a random delay."""
    jitter = poll_settings(backend_name)[1]
    poll_endpoints.apply_async(args=(backend_name,), countdown=random.uniform(0, jitter))  # noqa: S311


@celery_app.task(name="stratus.deployments.poll")
def poll_endpoints(backend_name: str) -> int:
    """Apply the status of every watched endpoint of a backend; returns deployments moved.

    Pages through all of them, ``WATCH_LIMIT`` endpoints per backend call.
    """
    backend = get_backend(backend_name)
    if backend is None:
        return 0
    with held(f"poll:endpoints:{backend_name}") as holding:
        if not holding:
            return 0
        moved = 0
        after: uuid.UUID | None = None
        while True:
            with unit_of_work() as session:
                watched = lifecycle.watched(session, backend_name, WATCH_LIMIT, after)
            if not watched:
                return moved
            try:
                statuses = backend.describe_endpoints(list(watched))
            except BackendError as error:
                logger.warning("polling endpoints of %s failed: %s", backend_name, error)
                return moved
            moved += _apply_statuses(watched, statuses)
            if len(watched) < WATCH_LIMIT:
                return moved
            after = max(watched.values())


def _apply_statuses(watched: dict[str, uuid.UUID], statuses: Mapping[str, EndpointStatus]) -> int:
    moved = 0
    with unit_of_work() as session:
        for name, deployment_id in watched.items():
            if name not in statuses:
                continue
            try:
                with session.begin_nested():
                    moved += lifecycle.apply_endpoint_status(session, deployment_id, statuses[name])
            except Exception:  # one bad row must not stop the others
                logger.exception("applying endpoint status to %s failed", deployment_id)
    return moved


@celery_app.task(name="stratus.deployments.pull_metrics")
def pull_endpoint_metrics(backend_name: str) -> int:
    """Pull each serving endpoint's metrics since the last pull into metric points."""
    backend = get_backend(backend_name)
    if backend is None:
        return 0
    with held(f"pull:endpoint-metrics:{backend_name}") as holding:
        if not holding:  # another pull is storing these periods right now
            return 0
        return _pull_metrics(backend, backend_name)


METRICS_SETTLE_S = 2.0


def _pull_metrics(backend: Backend, backend_name: str) -> int:
    period = metrics_period_s(backend_name)
    # Only whole periods: the next pull starts where this one ended, with nothing half-counted.
    # A period counts as ended a moment after its end: API processes write request lines in
    # batches (a quarter second apart on the local backend), so the last ones are in by then.
    now = utcnow().timestamp() - METRICS_SETTLE_S
    end = datetime.fromtimestamp(now - now % period, tz=UTC)
    stored = 0
    after: uuid.UUID | None = None
    while True:
        with unit_of_work() as session:
            serving = lifecycle.serving(session, backend_name, WATCH_LIMIT, after)
        for name, (deployment_id, synced_until) in serving.items():
            start = synced_until or end - FIRST_PULL
            try:
                samples = backend.fetch_endpoint_metrics(name, start, end, period)
            except BackendError as error:
                logger.warning("metrics of %s unavailable: %s", name, error)
                continue
            with unit_of_work() as session:
                stored += lifecycle.store_endpoint_metrics(session, deployment_id, samples, end)
        if len(serving) < WATCH_LIMIT:
            return stored
        after = max(d for d, _ in serving.values())
