"""Runs and deployments through the worker tasks on each REST cloud's fake, with the real
backend: submit, poll to completion, and an endpoint created, resized and deleted."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import select, update

from app.backends import registry
from app.backends.naming import endpoint_name, job_name
from app.domain.deployments.models import Deployment
from app.domain.outbox import service as outbox
from app.domain.outbox.models import OutboxMessage
from app.domain.runs.models import TrainingRun
from tests.backends.contract.clouds import INSTANCE, CloudHarness
from tests.backends.contract.conftest import _cloud
from tests.factories import make_deployment, make_project, make_run
from tests.workers.conftest import UnitOfWork
from workers.tasks import deployments as deployment_tasks
from workers.tasks import runs as run_tasks

pytestmark = pytest.mark.usefixtures("app_on_pg")


@pytest.fixture(params=["vertex", "azureml", "watsonx"])
def cloud(request: pytest.FixtureRequest) -> Iterator[CloudHarness]:
    harness = _cloud(request, request.param)
    with registry.override(harness.name, harness.backend):
        yield harness


def _run(committed: UnitOfWork, cloud: CloudHarness) -> tuple[uuid.UUID, int]:
    spec = {
        "image": "us-docker.pkg.dev/demo/train:1",
        "entrypoint": "train.py",
        "source_dir": "s3://demo/code.tar.gz",
        "instance_type": INSTANCE[cloud.name],
        "output_location": "s3://demo/out/",
    }
    with committed() as session:
        project = make_project(session, default_backend=cloud.name)
        run = make_run(session, project, spec=spec)
        message = outbox.enqueue(session, outbox.RUN_SUBMIT, run_id=str(run.id))
        session.flush()
        return run.id, message.id


def _run_row(committed: UnitOfWork, run_id: uuid.UUID) -> TrainingRun:
    with committed() as session:
        run = session.get(TrainingRun, run_id)
        assert run is not None
        return run


def test_a_run_is_submitted_once_and_polled_to_completion(
    committed: UnitOfWork, cloud: CloudHarness
) -> None:
    run_id, message_id = _run(committed, cloud)
    run_tasks.submit_run(message_id)
    run_tasks.submit_run(message_id)  # delivered twice
    assert cloud.jobs_named(job_name(run_id)) == 1
    assert _run_row(committed, run_id).external_id

    run_tasks.poll_once(cloud.name)
    assert _run_row(committed, run_id).status == "running"
    cloud.finish(job_name(run_id))
    run_tasks.poll_once(cloud.name)

    run = _run_row(committed, run_id)
    assert run.status == "completed"
    assert run.ended_at is not None


def _pending(committed: UnitOfWork) -> list[tuple[int, str]]:
    with committed() as session:
        rows = session.scalars(select(OutboxMessage).where(OutboxMessage.processed_at.is_(None)))
        return [(m.id, m.topic) for m in rows]


def _deployment(committed: UnitOfWork, dep_id: uuid.UUID) -> Deployment:
    with committed() as session:
        deployment = session.get(Deployment, dep_id)
        assert deployment is not None
        return deployment


def test_an_endpoint_is_created_resized_and_deleted(
    committed: UnitOfWork, cloud: CloudHarness
) -> None:
    with committed() as session:
        project = make_project(session, default_backend=cloud.name)
        deployment = make_deployment(session, project, instance_type=INSTANCE[cloud.name])
        message = outbox.enqueue(
            session, outbox.DEPLOYMENT_CREATE, deployment_id=str(deployment.id)
        )
        session.flush()
        dep_id, create_id = deployment.id, message.id
    deployment_tasks.create_deployment(create_id)
    cloud.settle()
    deployment_tasks.poll_endpoints(cloud.name)
    assert _deployment(committed, dep_id).status == "in_service"

    with committed() as session:
        session.execute(update(Deployment).values(desired_instances=3))
    deployment_tasks.poll_endpoints(cloud.name)
    for message_id, topic in _pending(committed):
        assert topic == outbox.DEPLOYMENT_UPDATE
        deployment_tasks.update_deployment(message_id)
    cloud.settle()
    deployment_tasks.poll_endpoints(cloud.name)
    deployed = _deployment(committed, dep_id)
    assert (deployed.status, deployed.current_instances) == ("in_service", 3)
    assert cloud.replicas(endpoint_name(dep_id)) == 3

    with committed() as session:
        message = outbox.enqueue(session, outbox.DEPLOYMENT_DELETE, deployment_id=str(dep_id))
        session.execute(update(Deployment).values(status="deleting"))
        session.flush()
        delete_id = message.id
    deployment_tasks.delete_deployment(delete_id)
    cloud.settle()
    deployment_tasks.poll_endpoints(cloud.name)
    assert _deployment(committed, dep_id).status == "deleted"
