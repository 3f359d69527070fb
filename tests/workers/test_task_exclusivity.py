"""Every task that calls a backend holds its message (or, for periodic work, its backend) for
the call: a concurrent second delivery finds it held and leaves the backend alone."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import pytest

from app.backends import registry
from app.backends.base import EndpointState, EndpointStatus, JobState, JobStatus
from app.backends.naming import endpoint_name, job_name
from app.clock import utcnow
from app.domain.leases import service as leases
from app.domain.outbox import repository as outbox_repository
from app.domain.outbox import service as outbox
from tests.factories import make_deployment, make_project, make_run
from tests.workers.conftest import UnitOfWork
from tests.workers.scripted_backend import ScriptedBackend
from workers.tasks import deployments as deployment_tasks
from workers.tasks import runs as run_tasks

pytestmark = pytest.mark.usefixtures("app_on_pg")


class GatedBackend(ScriptedBackend):
    """Blocks inside the named backend call until the test opens the gate."""

    def __init__(self, gated: str) -> None:
        super().__init__()
        self.gated, self.entered, self.gate = gated, threading.Event(), threading.Event()

    def _call(self, op: str) -> None:
        super()._call(op)
        if op == self.gated:
            self.entered.set()
            assert self.gate.wait(30)


def _stop_message(committed: UnitOfWork, backend: ScriptedBackend) -> int:
    with committed() as session:
        run = make_run(session, make_project(session), status="stopping", external_id="job/x")
        name = job_name(run.id)
        backend.jobs[name] = JobStatus(name, "job/x", JobState.RUNNING)
        message = outbox.enqueue(session, outbox.RUN_STOP, run_id=str(run.id))
        session.flush()
        return message.id


def _deployment_message(committed: UnitOfWork, backend: ScriptedBackend, status: str) -> int:
    topic = {"updating": outbox.DEPLOYMENT_UPDATE, "deleting": outbox.DEPLOYMENT_DELETE}[status]
    with committed() as session:
        deployment = make_deployment(
            session, make_project(session), status=status, desired_instances=2
        )
        name = endpoint_name(deployment.id)
        backend.endpoints[name] = EndpointStatus(name, f"ep/{name}", EndpointState.IN_SERVICE, 1)
        message = outbox.enqueue(session, topic, deployment_id=str(deployment.id))
        session.flush()
        return message.id


CASES: dict[str, tuple[str, Callable[[int], None], Callable[..., int]]] = {
    "run stop": ("stop_training", run_tasks.stop_run, _stop_message),
    "endpoint resize": (
        "update_capacity",
        deployment_tasks.update_deployment,
        lambda c, b: _deployment_message(c, b, "updating"),
    ),
    "endpoint delete": (
        "delete_endpoint",
        deployment_tasks.delete_deployment,
        lambda c, b: _deployment_message(c, b, "deleting"),
    ),
}


def _processed(committed: UnitOfWork, message_id: int) -> bool:
    with committed() as session:
        message = outbox_repository.get(session, message_id)
        assert message is not None
        return message.processed_at is not None


@pytest.mark.parametrize("case", list(CASES))
def test_a_second_delivery_during_the_first_does_not_call_the_backend(
    committed: UnitOfWork, case: str
) -> None:
    op, task, message_for = CASES[case]
    backend = GatedBackend(op)
    with registry.override("local", backend):
        message_id = message_for(committed, backend)
        first = threading.Thread(target=task, args=(message_id,))
        first.start()
        try:
            assert backend.entered.wait(30), "the first delivery reached the backend"
            task(message_id)  # the relay sent the message again meanwhile
            assert backend.calls[op] == 1
            assert not _processed(committed, message_id)
            with committed() as session:
                message = outbox_repository.get(session, message_id)
                assert message is not None
                assert message.last_error == "another delivery is being processed"
                assert message.available_at > utcnow()
        finally:
            backend.gate.set()
            first.join(30)
    assert backend.calls[op] == 1
    assert _processed(committed, message_id)


@pytest.mark.parametrize(
    ("task", "lease"),
    [
        (deployment_tasks.pull_endpoint_metrics, "pull:endpoint-metrics:local"),
        (deployment_tasks.poll_endpoints, "poll:endpoints:local"),
        (run_tasks.poll_once, "poll:runs:local"),
    ],
    ids=["endpoint metrics", "endpoint poll", "run poll"],
)
def test_periodic_backend_work_is_skipped_while_another_run_of_it_holds_the_backend(
    committed: UnitOfWork, task: Callable[[str], int], lease: str
) -> None:
    backend = ScriptedBackend()
    with committed() as session:
        project = make_project(session)
        deployment = make_deployment(session, project, status="in_service", current_instances=1)
        name = endpoint_name(deployment.id)
        backend.endpoints[name] = EndpointStatus(name, f"ep/{name}", EndpointState.IN_SERVICE, 1)
        run = make_run(session, project, status="running", external_id="job/x")
        backend.jobs[job_name(run.id)] = JobStatus(job_name(run.id), "job/x", JobState.RUNNING)
        leases.try_acquire(session, lease, "another-worker", timedelta(seconds=30))
    with registry.override("local", backend):
        assert task("local") == 0
        assert sum(backend.calls.values()) == 0
        with committed() as session:
            leases.release(session, lease, "another-worker")
        task("local")
        assert sum(backend.calls.values()) >= 1
