"""A deployment through its backend: create, come into service, resize to the absolute
desired count (also when it changes mid-update), cost accounting, metrics, delete."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from app.backends import registry
from app.backends.base import BackendError, EndpointState
from app.backends.naming import endpoint_name
from app.domain.deployments.models import Deployment
from app.domain.metrics.models import MetricPoint
from app.domain.outbox import service as outbox
from app.domain.outbox.models import OutboxMessage
from tests.factories import make_deployment, make_project
from tests.workers.conftest import UnitOfWork
from tests.workers.scripted_backend import ScriptedBackend
from workers.tasks import deployments as tasks

pytestmark = pytest.mark.usefixtures("app_on_pg")


@pytest.fixture
def backend() -> Iterator[ScriptedBackend]:
    scripted = ScriptedBackend()
    with registry.override("local", scripted):
        yield scripted


def creating(committed: UnitOfWork, desired: int = 1) -> tuple[uuid.UUID, int]:
    with committed() as session:
        deployment = make_deployment(session, make_project(session), desired_instances=desired)
        message = outbox.enqueue(
            session, outbox.DEPLOYMENT_CREATE, deployment_id=str(deployment.id)
        )
        session.flush()
        return deployment.id, message.id


def load(committed: UnitOfWork, deployment_id: uuid.UUID) -> Deployment:
    with committed() as session:
        deployment = session.get(Deployment, deployment_id)
        assert deployment is not None
        return deployment


def pending_topics(committed: UnitOfWork) -> list[tuple[int, str]]:
    with committed() as session:
        return [
            (m.id, m.topic)
            for m in session.scalars(
                select(OutboxMessage).where(OutboxMessage.processed_at.is_(None))
            )
        ]


def run_pending(committed: UnitOfWork) -> None:
    for message_id, topic in pending_topics(committed):
        {
            outbox.DEPLOYMENT_CREATE: tasks.create_deployment,
            outbox.DEPLOYMENT_UPDATE: tasks.update_deployment,
            outbox.DEPLOYMENT_DELETE: tasks.delete_deployment,
        }[topic](message_id)


def test_create_comes_into_service_and_resizes_to_desired(
    committed: UnitOfWork, backend: ScriptedBackend
) -> None:
    dep_id, message_id = creating(committed, desired=2)
    tasks.create_deployment(message_id)
    name = endpoint_name(dep_id)
    assert load(committed, dep_id).status == "creating"
    assert load(committed, dep_id).external_id == f"ep/{name}"
    backend.set_endpoint(name, EndpointState.IN_SERVICE, current=2)
    assert tasks.poll_endpoints("local") == 1
    deployment = load(committed, dep_id)
    assert (deployment.status, deployment.current_instances) == ("in_service", 2)
    assert deployment.capacity_since is not None

    # Someone asks for 3: the controller sets the absolute target, once.
    with committed() as session:
        session.execute(update(Deployment).values(desired_instances=3))
    tasks.poll_endpoints("local")
    assert load(committed, dep_id).status == "updating"
    run_pending(committed)
    assert backend.calls["capacity=3"] == 1
    backend.set_endpoint(name, EndpointState.IN_SERVICE, current=3)
    tasks.poll_endpoints("local")
    deployment = load(committed, dep_id)
    assert (deployment.status, deployment.current_instances) == ("in_service", 3)
    assert pending_topics(committed) == []


def test_desired_changed_during_an_update_is_applied_too(
    committed: UnitOfWork, backend: ScriptedBackend
) -> None:
    dep_id, message_id = creating(committed, desired=1)
    tasks.create_deployment(message_id)
    name = endpoint_name(dep_id)
    backend.set_endpoint(name, EndpointState.IN_SERVICE, current=1)
    tasks.poll_endpoints("local")
    with committed() as session:
        session.execute(update(Deployment).values(desired_instances=2))
    tasks.poll_endpoints("local")
    run_pending(committed)  # resizing to 2
    with committed() as session:  # ...and meanwhile the target moves to 4
        session.execute(update(Deployment).values(desired_instances=4))
    backend.set_endpoint(name, EndpointState.IN_SERVICE, current=2)
    tasks.poll_endpoints("local")
    run_pending(committed)
    assert backend.calls["capacity=4"] == 1
    backend.set_endpoint(name, EndpointState.IN_SERVICE, current=4)
    tasks.poll_endpoints("local")
    assert load(committed, dep_id).current_instances == 4
    assert load(committed, dep_id).status == "in_service"


def test_instance_seconds_accumulate_per_served_count(
    committed: UnitOfWork, backend: ScriptedBackend
) -> None:
    dep_id, message_id = creating(committed, desired=2)
    tasks.create_deployment(message_id)
    backend.set_endpoint(endpoint_name(dep_id), EndpointState.IN_SERVICE, current=2)
    tasks.poll_endpoints("local")
    since = load(committed, dep_id).capacity_since
    assert since is not None
    with committed() as session:  # pretend it has served 2 instances for an hour
        session.execute(update(Deployment).values(capacity_since=since - timedelta(hours=1)))
        message = outbox.enqueue(session, outbox.DEPLOYMENT_DELETE, deployment_id=str(dep_id))
        session.execute(update(Deployment).values(status="deleting"))
        session.flush()
        delete_id = message.id
    tasks.delete_deployment(delete_id)
    deployment = load(committed, dep_id)
    assert deployment.status == "deleted"
    assert deployment.current_instances == 0
    assert 7200 <= deployment.instance_seconds < 7260


def test_endpoint_failure_and_disappearance_are_recorded(
    committed: UnitOfWork, backend: ScriptedBackend
) -> None:
    dep_id, message_id = creating(committed)
    backend.fail_next["create_endpoint"] = BackendError("model image not found", retryable=False)
    tasks.create_deployment(message_id)
    deployment = load(committed, dep_id)
    assert (deployment.status, deployment.status_reason) == ("failed", "model image not found")

    other_id, other_message = creating(committed)
    tasks.create_deployment(other_message)
    backend.set_endpoint(endpoint_name(other_id), EndpointState.IN_SERVICE, current=1)
    tasks.poll_endpoints("local")
    backend.endpoints.clear()
    tasks.poll_endpoints("local")
    gone = load(committed, other_id)
    assert gone.status == "failed"
    assert gone.status_reason == "the endpoint disappeared from the backend"


def test_endpoint_metrics_are_pulled_once_per_period(
    committed: UnitOfWork, backend: ScriptedBackend
) -> None:
    dep_id, message_id = creating(committed)
    tasks.create_deployment(message_id)
    backend.set_endpoint(endpoint_name(dep_id), EndpointState.IN_SERVICE, current=1)
    tasks.poll_endpoints("local")
    assert tasks.pull_endpoint_metrics("local") == 1
    with committed() as session:
        points = session.scalars(select(MetricPoint).where(MetricPoint.subject_id == dep_id)).all()
        assert [(p.name, p.value, p.subject_type) for p in points] == [
            ("invocations", 42.0, "deployment")
        ]
    assert load(committed, dep_id).metrics_synced_until is not None
