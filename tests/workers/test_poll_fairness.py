"""Pollers cover every in-flight run and watched endpoint in each cycle, however many there
are: they page through them ``POLL_LIMIT``/``WATCH_LIMIT`` at a time (3 here)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime

import pytest
from sqlalchemy import select

from app.backends import registry
from app.backends.base import EndpointState, EndpointStatus, JobState, JobStatus, MetricSample
from app.backends.naming import endpoint_name, job_name
from app.domain.deployments.models import Deployment
from app.domain.runs.models import TrainingRun
from tests.factories import make_deployment, make_project, make_run
from tests.workers.conftest import UnitOfWork
from tests.workers.scripted_backend import ScriptedBackend
from workers.tasks import deployments as deployment_tasks
from workers.tasks import runs as run_tasks

pytestmark = pytest.mark.usefixtures("app_on_pg")
PAGE = 3


class RecordingBackend(ScriptedBackend):
    """Remembers the names each call asked about."""

    def __init__(self) -> None:
        super().__init__()
        self.asked_jobs: list[list[str]] = []
        self.asked_endpoints: list[list[str]] = []
        self.metrics_of: list[str] = []

    def describe_jobs(
        self, known: Mapping[str, JobState], changed_since: datetime | None = None
    ) -> Mapping[str, JobStatus]:
        self.asked_jobs.append(list(known))
        return super().describe_jobs(known, changed_since)

    def describe_endpoints(self, endpoint_names: Sequence[str]) -> Mapping[str, EndpointStatus]:
        self.asked_endpoints.append(list(endpoint_names))
        return super().describe_endpoints(endpoint_names)

    def fetch_endpoint_metrics(
        self, endpoint_name: str, start: datetime, end: datetime, period_s: int
    ) -> Sequence[MetricSample]:
        self.metrics_of.append(endpoint_name)
        return super().fetch_endpoint_metrics(endpoint_name, start, end, period_s)


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingBackend]:
    monkeypatch.setattr(run_tasks, "POLL_LIMIT", PAGE)
    monkeypatch.setattr(deployment_tasks, "WATCH_LIMIT", PAGE)
    recording = RecordingBackend()
    with registry.override("local", recording):
        yield recording


def test_one_run_poll_sees_every_in_flight_run_past_the_page_limit(
    committed: UnitOfWork, backend: RecordingBackend
) -> None:
    with committed() as session:
        project = make_project(session)
        runs = [
            make_run(session, project, status="running", external_id=f"job/{i}")
            for i in range(3 * PAGE + 1)
        ]
        names = {job_name(r.id) for r in runs}
        for r in runs:  # every job has finished on the backend
            backend.jobs[job_name(r.id)] = JobStatus(
                job_name(r.id), "job/x", JobState.FAILED, failure_reason="out of memory"
            )
    assert run_tasks.poll_once("local") == len(runs)
    assert [len(page) for page in backend.asked_jobs] == [PAGE, PAGE, PAGE, 1]
    assert {n for page in backend.asked_jobs for n in page} == names
    assert backend.calls["fetch_training_metrics"] == len(runs)  # live metrics of all of them
    with committed() as session:
        statuses = session.scalars(select(TrainingRun.status)).all()
    assert statuses == ["failed"] * len(runs)


def test_one_endpoint_poll_and_one_metrics_pull_cover_every_deployment(
    committed: UnitOfWork, backend: RecordingBackend
) -> None:
    with committed() as session:
        project = make_project(session)
        deployments = [
            make_deployment(session, project, status="creating") for _ in range(2 * PAGE + 1)
        ]
        names = {endpoint_name(d.id) for d in deployments}
        for name in names:
            backend.endpoints[name] = EndpointStatus(
                name, f"ep/{name}", EndpointState.IN_SERVICE, 1
            )
    assert deployment_tasks.poll_endpoints("local") == len(deployments)
    assert [len(page) for page in backend.asked_endpoints] == [PAGE, PAGE, 1]
    assert {n for page in backend.asked_endpoints for n in page} == names
    with committed() as session:
        assert set(session.scalars(select(Deployment.status))) == {"in_service"}
    assert deployment_tasks.pull_endpoint_metrics("local") == len(deployments)
    assert sorted(backend.metrics_of) == sorted(names)
