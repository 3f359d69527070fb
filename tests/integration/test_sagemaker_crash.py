"""Exactly-once submission with real processes: a Celery worker (prefork) on the real Redis
submits 100 runs to a moto server over HTTP, and is SIGKILLed, pool and all, while
CreateTrainingJob requests are in flight; the outbox relay brings the lost wake-ups back once
their lease runs out. Every run ends with exactly one CreateTrainingJob in moto's request log."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from moto.server import ThreadedMotoServer
from sqlalchemy import select

from app.backends.naming import job_name
from app.domain.access import Role
from app.domain.outbox import service as outbox
from app.domain.outbox.models import OutboxMessage
from app.domain.runs import service as runs_service
from app.domain.runs.models import TrainingRun
from app.domain.runs.schemas import RunCreate, RunSpec
from app.settings import get_settings
from tests.backends.conftest import REGION, ROLE, _add_stop_training_job, _refuse_duplicates
from tests.conftest import TEST_PEPPER
from tests.factories import make_key, make_project
from tests.integration.conftest import (
    BACKEND_CONFIG,
    SPEC,
    CreateLog,
    install_aws_job_semantics,
    moto_backend,
)
from tests.workers.conftest import UnitOfWork
from workers.tasks.outbox import relay_outbox

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

RUNS = 100
LEASE_S = 5  # the shortest outbox lease the settings allow
# Where each kill lands: the job made but its answer not sent, or the request not yet served.
KILL_PHASES = ("created", "received", "created", "received")
DEADLINE_S = 150
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, CreateLog]]:
    """A moto server in this process (so its state can be patched and read here)."""
    log = CreateLog()
    _refuse_duplicates(monkeypatch)
    _add_stop_training_job(monkeypatch)
    # Slow enough that a kill lands inside the request; far shorter than the lease, so the
    # request is served before the wake-up comes back.
    install_aws_job_semantics(monkeypatch, log, before_s=0.15, after_s=0.35)
    moto_backend().reset()
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}", log
    finally:
        server.stop()
        moto_backend().reset()


class Worker:
    """``celery worker`` in a process group of its own, so a kill takes the pool with it."""

    def __init__(self, queue: str, env: dict[str, str], log_path: Path) -> None:
        self.queue, self.env, self.log_path = queue, env, log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> None:
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.celery_app:celery_app",
            "worker",
            "--pool=prefork",
            "--concurrency=2",
            "-Q",
            self.queue,
            "-n",
            f"crash-{uuid.uuid4().hex[:8]}@%h",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                command, cwd=REPO, env=self.env, stdout=out, stderr=out, start_new_session=True
            )
        self.started_at = time.monotonic()

    def kill(self) -> None:
        """SIGKILL the worker's process group: the main process and its pool children."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def worker_env(pg_url: str, redis_url: str, endpoint_url: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STRATUS_", "AWS_")) or k == "STRATUS_TEST_DATABASE_URL"
    }
    env.update(
        {
            "STRATUS_DATABASE_URL": pg_url,
            "STRATUS_BROKER_URL": redis_url,
            "STRATUS_KEY_PEPPER": TEST_PEPPER,
            "STRATUS_WORKER__OUTBOX_LEASE_S": str(LEASE_S),
            # A killed task's hold on its message lapses within this.
            "STRATUS_WORKER__MESSAGE_LEASE_S": "2",
            "STRATUS_BACKENDS__LOCAL__ENABLED": "false",
            "STRATUS_BACKENDS__SAGEMAKER__ENABLED": "true",
            "STRATUS_BACKENDS__SAGEMAKER__REGION": REGION,
            "STRATUS_BACKENDS__SAGEMAKER__ROLE_ARN": ROLE,
            "STRATUS_BACKENDS__SAGEMAKER__ENDPOINT_URL": endpoint_url,
            "STRATUS_BACKENDS__SAGEMAKER__API_RATE_PER_S": "1000",
            "STRATUS_BACKENDS__SAGEMAKER__API_BURST": "1000",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    return env


def create_runs(committed: UnitOfWork) -> dict[uuid.UUID, str]:
    """RUNS pending runs with their submit messages, committed: run id -> job name."""
    with committed() as session:
        key = make_key(session)
        project = make_project(
            session, (key, Role.OWNER), default_backend="sagemaker", backend_config=BACKEND_CONFIG
        )
        runs = [
            runs_service.create_run(
                session,
                key.principal,
                project.id,
                RunCreate(name=f"run-{i}", backend="sagemaker", spec=RunSpec(**SPEC)),
                get_settings(),
            )
            for i in range(RUNS)
        ]
    return {run.id: job_name(run.id) for run in runs}


def unsettled(committed: UnitOfWork) -> tuple[dict[str, int], int]:
    """Runs by status that are not submitted yet, and submit messages not acknowledged."""
    with committed() as session:
        waiting: dict[str, int] = {}
        for status in session.scalars(
            select(TrainingRun.status).where(TrainingRun.status.in_(["pending", "submitting"]))
        ):
            waiting[status] = waiting.get(status, 0) + 1
        messages = session.scalars(
            select(OutboxMessage.id).where(
                OutboxMessage.topic == outbox.RUN_SUBMIT, OutboxMessage.processed_at.is_(None)
            )
        ).all()
        return waiting, len(messages)


def drop_unacked(client: redis.Redis, queue: str) -> None:
    """Forget the killed workers' unacknowledged deliveries, so Redis never restores them."""
    for tag, raw in client.hgetall("unacked").items():
        try:
            routing_key = json.loads(raw)[2]
        except (ValueError, IndexError, TypeError):
            continue
        if routing_key == queue:
            client.hdel("unacked", tag)
            client.zrem("unacked_index", tag)


def test_sigkilled_workers_submit_every_run_exactly_once(
    committed: UnitOfWork,
    celery_queue: str,
    pg_url: str,
    redis_url: str,
    moto_server: tuple[str, CreateLog],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    endpoint_url, log = moto_server
    # The relay in this process: short leases, and small batches so that no wake-up waits in
    # the queue for most of its lease (the killed ones are the ones that come back).
    monkeypatch.setenv("STRATUS_WORKER__OUTBOX_LEASE_S", str(LEASE_S))
    monkeypatch.setenv("STRATUS_WORKER__OUTBOX_BATCH_SIZE", "4")
    get_settings.cache_clear()
    names = create_runs(committed)
    broker = redis.Redis.from_url(redis_url)
    worker = Worker(celery_queue, worker_env(pg_url, redis_url, endpoint_url), tmp_path / "w.log")
    kills: list[list[str]] = []
    worker.start()
    try:
        deadline = time.monotonic() + DEADLINE_S
        next_check = 0.0
        while time.monotonic() < deadline:
            if broker.llen(celery_queue) < 2:
                relay_outbox()
            if len(kills) < len(KILL_PHASES):
                # Kills spread over the submissions, each into this worker's own request.
                due = len(log.accepted) >= (len(kills) + 1) * RUNS // (len(KILL_PHASES) + 1)
                in_flight = log.in_phase(KILL_PHASES[len(kills)], since=worker.started_at)
                if due and in_flight:
                    worker.kill()
                    kills.append(in_flight)
                    worker.start()
            elif time.monotonic() >= next_check:
                next_check = time.monotonic() + 0.5
                if unsettled(committed) == ({}, 0):
                    break
            time.sleep(0.01)
        waiting, unacknowledged = unsettled(committed)
    finally:
        worker.stop()
        drop_unacked(broker, celery_queue)
        broker.close()

    assert (waiting, unacknowledged) == ({}, 0), worker.log_tail()
    assert len(kills) >= 3, kills
    assert all(kills), kills  # each kill cut at least one CreateTrainingJob short
    # Moto's request log: exactly one CreateTrainingJob per run, the killed ones included.
    assert log.requests == dict.fromkeys(names.values(), 1)
    assert log.accepted == log.requests
    jobs = moto_backend().training_jobs
    with committed() as session:
        runs = session.scalars(select(TrainingRun)).all()
    assert len(runs) == RUNS
    for run in runs:
        assert run.status == "running", (run.id, run.status, run.status_reason)
        assert run.external_id == jobs[names[run.id]].arn
