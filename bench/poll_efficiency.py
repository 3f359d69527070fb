"""Polling efficiency of the SageMaker backend: API calls per in-flight job per poll cycle and
how stale a run's status gets, against describing every job every cycle.

Everything runs in this process and nothing leaves the host: moto's in-process AWS, a scratch
PostgreSQL database created and dropped here (a SQLite file in a temporary directory when no
PostgreSQL answers), and Stratus' settings pointed at both. ``--jobs`` runs are created through
the run service and submitted through the real submit task (one CreateTrainingJob each); moto
then holds them InProgress, as AWS would.

Then ``--cycles`` cycles in real time (not simulated), ``--interval`` seconds each. A mutator
thread changes moto's jobs at uniformly random moments of every cycle: 20 % of the in-flight jobs
get a new SecondaryStatus and 2 % finish (Completed or Failed), each with a new LastModifiedTime
as AWS sets it. At every interval plus a beat-like random delay of up to ``--jitter`` seconds,
``workers.tasks.runs.poll_once("sagemaker")`` runs, and a botocore hook counts its SageMaker
calls (the submissions are not counted). Staleness is the time from a job's change in moto to
the run's new status in ``GET /v1/projects/{id}/runs`` (checked right after each poll).

The baseline, measured in the same run on the same jobs, is what a poller that describes every
in-flight job costs: one DescribeTrainingJob per job per cycle.

With ``--backend vertex|azureml|watsonx`` the same measurement runs against that cloud's fake
(``tests/fakes/``, a server on a loopback port; see ``bench/poll_fakes.py``): the mutator touches
and finishes the fake's jobs instead of moto's, the fake counts the API calls, and the baseline is
one GET per in-flight job. The fake answers in microseconds, so the seconds are not the cloud's.

Run: ``.venv/bin/python bench/poll_efficiency.py`` (``--help`` for the options). The last line is
one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from moto import mock_aws
from moto.core.utils import utcnow as moto_now
from moto.sagemaker.models import SageMakerModelBackend, sagemaker_backends
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")

import poll_fakes  # noqa: E402, I001 - bench/ is on sys.path
from fastapi.testclient import TestClient  # noqa: E402

from app.backends import registry  # noqa: E402
from app.backends.naming import job_name  # noqa: E402
from app.backends.sagemaker import SageMakerBackend  # noqa: E402
from app.db import get_engine, get_sessionmaker, unit_of_work  # noqa: E402
from app.domain.access import Principal  # noqa: E402
from app.domain.api_keys.service import issue_key  # noqa: E402
from app.domain.outbox import service as outbox  # noqa: E402
from app.domain.outbox.models import OutboxMessage  # noqa: E402
from app.domain.projects import service as projects_service  # noqa: E402
from app.domain.projects.schemas import ProjectCreate  # noqa: E402
from app.domain.runs import service as runs_service  # noqa: E402
from app.domain.runs.models import TrainingRun  # noqa: E402
from app.domain.runs.schemas import RunCreate, RunSpec  # noqa: E402
from app.domain.runs.states import RunStatus  # noqa: E402
from app.main import create_app  # noqa: E402
from app.migrate import upgrade  # noqa: E402
from app.settings import get_settings  # noqa: E402
from workers.tasks.runs import poll_once, submit_run  # noqa: E402

ACCOUNT, REGION = "123456789012", "us-east-1"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/stratus-bench"
ADMIN_URL = os.environ.get(
    "STRATUS_BENCH_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
SECONDARY_SHARE, TERMINAL_SHARE = 0.20, 0.02
SECONDARY = ("Downloading", "Training", "Uploading")
IN_FLIGHT = [RunStatus.SUBMITTING, RunStatus.RUNNING, RunStatus.STOPPING]
SPEC = {
    "image": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/train:1",
    "instance_type": "ml.m5.xlarge",
    "input_channels": {"train": "s3://stratus-bench/train/"},
    "output_location": "s3://stratus-bench/out",
    "max_runtime_seconds": 3600,
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000, help="in-flight jobs at the start")
    parser.add_argument("--cycles", type=int, default=20, help="poll cycles measured")
    parser.add_argument("--interval", type=float, default=2.0, help="poll interval, seconds")
    parser.add_argument("--jitter", type=float, default=0.5, help="beat's random poll delay")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--backend",
        choices=("sagemaker", "vertex", "azureml", "watsonx"),
        default="sagemaker",
        help="sagemaker: moto; the others: their fake server from tests/fakes",
    )
    return parser.parse_args()


@contextmanager
def scratch_database() -> Iterator[str]:
    """A migrated database of its own: PostgreSQL if it answers, else a SQLite file."""
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError:
        admin.dispose()
        with tempfile.TemporaryDirectory(prefix="stratus-bench-") as tmp:
            url = f"sqlite:///{Path(tmp) / 'bench.db'}"
            upgrade(url)
            yield url
        return
    name = f"stratus_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
        upgrade(url)
        yield url
    finally:
        if get_engine.cache_info().currsize:
            get_engine().dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def point_settings_at(database_url: str, interval: float, jitter: float) -> None:
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        os.environ.pop(var, None)
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "STRATUS_DATABASE_URL": database_url,
            "STRATUS_BROKER_URL": "memory://",
            "STRATUS_BACKENDS__LOCAL__ENABLED": "false",
            "STRATUS_BACKENDS__SAGEMAKER__ENABLED": "true",
            "STRATUS_BACKENDS__SAGEMAKER__REGION": REGION,
            "STRATUS_BACKENDS__SAGEMAKER__ROLE_ARN": ROLE,
            "STRATUS_BACKENDS__SAGEMAKER__POLL_INTERVAL_S": str(interval),
            "STRATUS_BACKENDS__SAGEMAKER__POLL_JITTER_S": str(jitter),
            # Calls are counted here, not paced: at this short interval the default budget
            # (10 requests/s) would stretch the polls.
            "STRATUS_BACKENDS__SAGEMAKER__API_RATE_PER_S": "100000",
            "STRATUS_BACKENDS__SAGEMAKER__API_BURST": "100000",
            # Every job lives in one project: its active-run quota must hold them all.
            "STRATUS_QUOTAS__ACTIVE_RUNS_PER_PROJECT": "1000000",
        }
    )
    get_settings.cache_clear()
    get_engine.cache_clear()
    get_sessionmaker.cache_clear()
    registry.reset()


@contextmanager
def jobs_start_in_progress() -> Iterator[None]:
    """AWS starts a job; moto finishes it on the spot."""
    create = SageMakerModelBackend.create_training_job

    def create_training_job(self: SageMakerModelBackend, **kw: Any) -> Any:
        job: Any = create(self, **kw)
        job.training_job_status, job.secondary_status = "InProgress", "Starting"
        job.training_end_time, job.final_metric_data_list = None, []
        return job

    SageMakerModelBackend.create_training_job = create_training_job  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        SageMakerModelBackend.create_training_job = create  # type: ignore[method-assign]


@dataclass
class CallCounter:
    """SageMaker operations made while ``on``, by name (one per call, as AWS bills them)."""

    on: bool = False
    calls: Counter[str] = field(default_factory=Counter)

    def __call__(self, model: Any, **_: Any) -> None:
        if self.on:
            self.calls[model.name] += 1

    @contextmanager
    def counting(self) -> Iterator[Counter[str]]:
        self.calls = Counter()
        self.on = True
        try:
            yield self.calls
        finally:
            self.on = False


def submit_all(
    jobs: int, backend: str = "sagemaker", spec: dict[str, Any] = SPEC
) -> tuple[str, Principal, float]:
    """Create ``jobs`` runs and submit each through the submit task: (project id, key, secs)."""
    settings = get_settings()
    with unit_of_work() as session:
        key = issue_key(session, "bench", True, settings.key_pepper, None)
        principal = Principal(key.id, key.name, key.admin)
        create = ProjectCreate(
            name="poll-bench",
            default_backend=backend,
            backend_config={"sagemaker": {"s3_prefixes": ["s3://stratus-bench/"]}},
        )
        project = projects_service.create_project(session, principal, create, settings)
        for i in range(jobs):
            data = RunCreate(name=f"run-{i}", backend=backend, spec=RunSpec(**spec))
            runs_service.create_run(session, principal, project.id, data, settings)
        message_ids = session.scalars(
            select(OutboxMessage.id).where(OutboxMessage.topic == outbox.RUN_SUBMIT)
        ).all()
    started = time.perf_counter()
    for message_id in message_ids:
        submit_run(message_id)
    return str(project.id), principal, time.perf_counter() - started


def in_flight_runs() -> int:
    with unit_of_work() as session:
        return (
            session.scalar(
                select(func.count())
                .select_from(TrainingRun)
                .where(TrainingRun.status.in_(IN_FLIGHT))
            )
            or 0
        )


class Mutator(threading.Thread):
    """Changes moto's jobs at random moments of each cycle and stamps every finish."""

    def __init__(self, start_at: float, interval: float, cycles: int, seed: int) -> None:
        super().__init__(daemon=True)
        self.start_at, self.interval, self.cycles = start_at, interval, cycles
        self.rng = random.Random(seed)  # noqa: S311 - a reproducible workload, not a secret
        self.jobs: dict[str, Any] = sagemaker_backends[ACCOUNT][REGION].training_jobs
        self.finished: dict[str, float] = {}  # job name -> when it finished in moto
        self.secondary_changes = 0

    def run(self) -> None:
        for cycle in range(self.cycles):
            begin = self.start_at + cycle * self.interval
            running = sorted(
                n for n, j in self.jobs.items() if j.training_job_status == "InProgress"
            )
            picked = self.rng.sample(
                running, round(len(running) * (SECONDARY_SHARE + TERMINAL_SHARE))
            )
            finishing = set(picked[: round(len(running) * TERMINAL_SHARE)])
            for at, name in sorted((begin + self.rng.uniform(0, self.interval), n) for n in picked):
                time.sleep(max(0.0, at - time.monotonic()))
                if name in finishing:
                    self._finish(name)
                else:
                    self._move_on(name)

    def _finish(self, name: str) -> None:
        job, now = self.jobs[name], moto_now()
        if self.rng.random() < 0.8:
            job.final_metric_data_list = [{"MetricName": "loss", "Value": 0.1, "Timestamp": now}]
            status = "Completed"
        else:
            job.failure_reason = "AlgorithmError: exit code 1"
            status = "Failed"
        job.training_end_time = job.last_modified_time = now
        job.training_job_status = job.secondary_status = status
        self.finished[name] = time.monotonic()

    def _move_on(self, name: str) -> None:
        job = self.jobs[name]
        job.secondary_status = self.rng.choice([s for s in SECONDARY if s != job.secondary_status])
        job.last_modified_time = moto_now()
        self.secondary_changes += 1


def finished_in_api(client: TestClient, headers: dict[str, str], project_id: str) -> set[str]:
    """Job names of the runs the API lists as completed or failed."""
    names: set[str] = set()
    for status in ("completed", "failed"):
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"status": status, "limit": 500}
            if cursor:
                params["cursor"] = cursor
            page = client.get(f"/v1/projects/{project_id}/runs", params=params, headers=headers)
            page.raise_for_status()
            body = page.json()
            names.update(job_name(uuid.UUID(r["id"])) for r in body["items"])
            cursor = body["next_cursor"]
            if not cursor:
                break
    return names


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass
class Cycle:
    in_flight: int
    calls: Counter[str]
    seconds: float
    moved: int


@dataclass
class Result:
    first_poll: Counter[str]
    cycles: list[Cycle]
    staleness: list[float]
    unresolved: int
    secondary_changes: int
    baseline_per_job: float
    baseline_s: float
    baseline_jobs: int


def run_cycles(
    args: argparse.Namespace,
    counter: Any,
    project_id: str,
    headers: dict[str, str],
    make_mutator: Any = Mutator,
) -> tuple[list[Cycle], list[float], int, int]:
    """Move moto's jobs while polling at the interval. Returns the cycles, the staleness of
    every finish the API showed, how many it never showed, and the secondary-status changes."""
    jitter = random.Random(args.seed + 1)  # noqa: S311 - a reproducible workload
    start_at = time.monotonic() + 0.2
    mutator = make_mutator(start_at, args.interval, args.cycles, args.seed)
    mutator.start()
    cycles: list[Cycle] = []
    visible: dict[str, float] = {}  # job name -> when the API first showed its run finished
    with TestClient(create_app(get_settings(), get_sessionmaker())) as client:
        for c in range(args.cycles + 1):  # one poll more, after the last cycle's changes
            poll_at = start_at + (c + 1) * args.interval + jitter.uniform(0, args.jitter)
            time.sleep(max(0.0, poll_at - time.monotonic()))
            flying = in_flight_runs()
            with counter.counting() as calls:
                began = time.perf_counter()
                moved = poll_once(args.backend)
                took = time.perf_counter() - began
            shown = finished_in_api(client, headers, project_id)
            now = time.monotonic()
            for name in shown - visible.keys():
                visible[name] = now
            if c < args.cycles:
                cycles.append(Cycle(flying, calls, took, moved))
    mutator.join()
    staleness = [visible[n] - at for n, at in mutator.finished.items() if n in visible]
    return cycles, staleness, len(mutator.finished) - len(staleness), mutator.secondary_changes


def describe_all(backend: SageMakerBackend, counter: CallCounter) -> tuple[float, float, int]:
    """The baseline: DescribeTrainingJob for every in-flight job (calls per job, secs, jobs)."""
    with unit_of_work() as session:
        run_ids = session.scalars(select(TrainingRun.id).where(TrainingRun.status.in_(IN_FLIGHT)))
        names = [job_name(run_id) for run_id in run_ids]
    with counter.counting() as calls:
        began = time.perf_counter()
        for name in names:
            backend.sm.describe_training_job(TrainingJobName=name)
        took = time.perf_counter() - began
    return sum(calls.values()) / len(names), took, len(names)


def measure(args: argparse.Namespace) -> Result:
    print(
        f"poll efficiency: {args.jobs} jobs, {args.cycles} cycles of {args.interval:g} s in real "
        f"time, each poll up to {args.jitter:g} s late (beat's jitter), seed {args.seed}"
    )
    project_id, principal, submit_s = submit_all(args.jobs)
    backend = registry.get_backend("sagemaker")
    assert isinstance(backend, SageMakerBackend)
    counter = CallCounter()
    backend.sm.meta.events.register("before-call.sagemaker", counter)
    jobs = sagemaker_backends[ACCOUNT][REGION].training_jobs
    assert len(jobs) == args.jobs
    assert in_flight_runs() == args.jobs
    print(f"submitted {args.jobs} runs through the submit task in {submit_s:.1f} s")
    an_hour_ago = moto_now() - timedelta(hours=1)
    for job in jobs.values():  # running for a while, unchanged lately
        job.secondary_status, job.last_modified_time = "Training", an_hour_ago
    with counter.counting() as first:
        poll_once("sagemaker")  # the first poll after a start reads everything once
    with unit_of_work() as session:
        secret = issue_key(session, "reader", True, get_settings().key_pepper, principal.id).secret
    headers = {"Authorization": f"Bearer {secret}"}
    cycles, staleness, unresolved, secondary = run_cycles(args, counter, project_id, headers)
    per_job, baseline_s, baseline_jobs = describe_all(backend, counter)
    return Result(
        first, cycles, staleness, unresolved, secondary, per_job, baseline_s, baseline_jobs
    )


def measure_fake(args: argparse.Namespace, fake: Any) -> Result:
    """The same measurement against a fake cloud (``--backend vertex|azureml|watsonx``)."""
    print(
        f"poll efficiency on the fake {args.backend}: {args.jobs} jobs, {args.cycles} cycles "
        f"of {args.interval:g} s in real time, each poll up to {args.jitter:g} s late, "
        f"seed {args.seed}"
    )
    project_id, principal, submit_s = submit_all(
        args.jobs, args.backend, poll_fakes.spec(args.backend)
    )
    backend = registry.get_backend(args.backend)
    assert backend is not None
    assert in_flight_runs() == args.jobs
    print(f"submitted {args.jobs} runs through the submit task in {submit_s:.1f} s")
    counter = poll_fakes.FakeCounter(fake)
    with counter.counting() as first:
        poll_once(args.backend)  # the first poll after a start reads everything once
    with unit_of_work() as session:
        secret = issue_key(session, "reader", True, get_settings().key_pepper, principal.id).secret
    headers = {"Authorization": f"Bearer {secret}"}

    def mutator(start_at: float, interval: float, cycles: int, seed: int) -> Any:
        return poll_fakes.FakeMutator(fake, start_at, interval, cycles, seed)

    cycles, staleness, unresolved, secondary = run_cycles(
        args, counter, project_id, headers, mutator
    )
    with unit_of_work() as session:
        external_ids = list(
            session.scalars(
                select(TrainingRun.external_id).where(TrainingRun.status.in_(IN_FLIGHT))
            )
        )
    per_job, baseline_s, jobs = poll_fakes.describe_all(
        args.backend, backend, external_ids, counter
    )
    return Result(first, cycles, staleness, unresolved, secondary, per_job, baseline_s, jobs)


def _columns(args: argparse.Namespace, calls: Counter[str]) -> tuple[int, int]:
    """(list calls, describe calls) of one poll."""
    if args.backend == "sagemaker":
        return calls["ListTrainingJobs"], calls["DescribeTrainingJob"]
    return poll_fakes.split(calls)


def report(args: argparse.Namespace, r: Result) -> None:
    print(f"first poll after start: {sum(r.first_poll.values())} calls {dict(r.first_poll)}")
    print()
    print(f"{'cycle':>5} {'in-flight':>9} {'List':>5} {'Describe':>8} {'calls/job':>9}", end="")
    print(f" {'poll s':>7} {'moved':>5}")
    for i, cycle in enumerate(r.cycles, 1):
        total = sum(cycle.calls.values())
        listed, described = _columns(args, cycle.calls)
        print(
            f"{i:>5} {cycle.in_flight:>9} {listed:>5} "
            f"{described:>8} {total / cycle.in_flight:>9.4f} "
            f"{cycle.seconds:>7.3f} {cycle.moved:>5}"
        )
    calls = sum(sum(c.calls.values()) for c in r.cycles)
    per_job = calls / sum(c.in_flight for c in r.cycles)
    p50, p95 = percentile(r.staleness, 0.50), percentile(r.staleness, 0.95)
    mean_poll = sum(c.seconds for c in r.cycles) / len(r.cycles)
    print()
    print(f"{'':<36} {'incremental':>12} {'describe-all':>13}")
    cloud = "SageMaker" if args.backend == "sagemaker" else args.backend
    where = "moto" if args.backend == "sagemaker" else "the fake"
    seconds = "(moto in process)" if args.backend == "sagemaker" else "(fake on loopback)"
    print(f"{cloud + ' calls per job per cycle':<36} {per_job:>12.4f} {r.baseline_per_job:>13.4f}")
    print(f"{'ratio to describe-all':<36} {per_job / r.baseline_per_job:>12.4f} {1:>13.4f}")
    print(f"{'seconds per poll ' + seconds:<36} {mean_poll:>12.3f} {r.baseline_s:>13.3f}")
    print(f"(describe-all measured over the {r.baseline_jobs} jobs still in flight at the end)")
    print()
    print(
        f"finished jobs: {len(r.staleness) + r.unresolved}, shown by the API: {len(r.staleness)}, "
        f"never shown: {r.unresolved}"
    )
    print(
        f"staleness, finish in {where} -> status in the API: p50 {p50:.2f} s, p95 {p95:.2f} s, "
        f"max {max(r.staleness):.2f} s (target p95 <= interval + 2 s = {args.interval + 2:g} s)"
    )
    print(
        f"secondary-status changes: {r.secondary_changes}, listed but never described "
        "(the run's status does not move)"
    )
    summary = {
        "calls_per_job_per_cycle": round(per_job, 4),
        "staleness_p95_s": round(p95, 3),
        "interval_s": args.interval,
    }
    print(json.dumps(summary))


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    with scratch_database() as url:
        point_settings_at(url, args.interval, args.jitter)
        if args.backend == "sagemaker":
            with mock_aws(), jobs_start_in_progress():
                result = measure(args)
        else:
            os.environ["STRATUS_BACKENDS__SAGEMAKER__ENABLED"] = "false"
            with poll_fakes.fake_cloud(args.backend, args.interval, args.jitter) as fake:
                get_settings.cache_clear()
                registry.reset()
                result = measure_fake(args, fake)
    report(args, result)


if __name__ == "__main__":
    main()
