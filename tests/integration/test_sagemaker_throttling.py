"""SageMaker throttling, slow answers and lost answers, end to end: submit and poll tasks keep
running against moto while a share of its answers are ThrottlingException (some in storms long
enough to exhaust botocore's retries) or an InternalFailure sent after the job was made. No run
fails for it, and every run has exactly one job.

The faults sit in moto's request handling (the in-process "server"), not in a botocore
before-send hook of the test's own: botocore calls every before-send handler, moto's included,
so a hook's throttle answer would not stop moto from making the job it refused.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.retries.standard import ExponentialBackoff
from moto.core.models import botocore_stubber
from sqlalchemy import select

from app.backends.naming import job_name
from app.backends.sagemaker import SageMakerBackend
from app.domain.outbox import service as outbox
from app.domain.outbox.models import OutboxMessage
from app.domain.runs.models import TrainingRun
from tests.integration.conftest import Api, CreateLog, moto_backend, set_job
from tests.workers.conftest import UnitOfWork, wait_for
from workers.tasks.runs import poll_once, submit_run

RUNS = 30
JSON = "application/x-amz-json-1.1"


@dataclass
class Faults:
    """What moto answers SageMaker requests (every HTTP attempt, retries included)."""

    rng: random.Random = field(default_factory=lambda: random.Random(20240611))  # noqa: S311
    throttle_share: float = 0.3
    lost_share: float = 0.2  # of CreateTrainingJob: made, then answered InternalFailure
    max_delay_s: float = 0.005
    enabled: bool = False
    storm_left: int = 0  # the next this many requests are all throttled
    requests: Counter[str] = field(default_factory=Counter)
    throttled: Counter[str] = field(default_factory=Counter)
    lost: Counter[str] = field(default_factory=Counter)  # by job name

    def storm(self, length: int = 6) -> None:
        """Throttle the next ``length`` requests: more than botocore's five attempts."""
        self.storm_left = length

    def answer(self, request: Any, forward: Any) -> Any:
        target = request.headers.get("X-Amz-Target") or b""
        target = target.decode() if isinstance(target, bytes) else target
        if not self.enabled or not target.startswith("SageMaker."):
            return forward(request)
        operation = target.removeprefix("SageMaker.")
        self.requests[operation] += 1
        time.sleep(self.rng.uniform(0, self.max_delay_s))
        if self.storm_left > 0 or self.rng.random() < self.throttle_share:
            self.storm_left = max(0, self.storm_left - 1)
            self.throttled[operation] += 1
            return _error(400, "ThrottlingException", "Rate exceeded")
        answer = forward(request)
        if (
            operation == "CreateTrainingJob"
            and answer[0] == 200
            and self.rng.random() < self.lost_share
        ):
            self.lost[json.loads(request.body)["TrainingJobName"]] += 1
            return _error(500, "InternalFailure", "We encountered an internal error.")
        return answer


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, str], str]:
    headers = {"Content-Type": JSON, "x-amzn-RequestId": str(uuid.uuid4())}
    return status, headers, json.dumps({"__type": code, "message": message})


@pytest.fixture
def faults(sagemaker: SageMakerBackend) -> Iterator[Faults]:
    injected = Faults()
    forward = botocore_stubber.process_request
    # botocore's backoff lengths are not under test, the number of attempts is: keep them short.
    delay = ExponentialBackoff.delay_amount
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(botocore_stubber, "process_request", lambda r: injected.answer(r, forward))
        mp.setattr(
            ExponentialBackoff,
            "delay_amount",
            lambda self, context: delay(self, context) / 100,
        )
        yield injected


def unprocessed_submits(committed: UnitOfWork) -> list[int]:
    with committed() as session:
        return list(
            session.scalars(
                select(OutboxMessage.id)
                .where(
                    OutboxMessage.topic == outbox.RUN_SUBMIT,
                    OutboxMessage.processed_at.is_(None),
                )
                .order_by(OutboxMessage.id)
            )
        )


def statuses(committed: UnitOfWork) -> dict[str, str]:
    with committed() as session:
        return {str(r.id): r.status for r in session.scalars(select(TrainingRun))}


def test_throttling_fails_nothing_and_submits_every_job_once(
    api: Api,
    faults: Faults,
    create_log: CreateLog,
    committed: UnitOfWork,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="workers.tasks.runs")
    run_ids = [api.create_run(f"run-{i}")["id"] for i in range(RUNS)]
    names = {run_id: job_name(uuid.UUID(run_id)) for run_id in run_ids}
    finishing = set(run_ids[: RUNS // 2])
    jobs = moto_backend().training_jobs
    faults.enabled = True

    for round_no in range(100):
        if round_no == 0:
            faults.storm()  # the first submit exhausts its retries
        for message_id in unprocessed_submits(committed):
            # Every wake-up not yet acknowledged comes again, deferred or not.
            submit_run(message_id)
        # A few jobs finish each round, so polls keep finding work.
        started = [
            names[run_id]
            for run_id in sorted(finishing)
            if names[run_id] in jobs and jobs[names[run_id]].training_job_status == "InProgress"
        ]
        for name in started[:3]:
            set_job(name, "Completed")
        if round_no == 1:
            faults.storm()  # this poll exhausts its retries and backs off
        poll_once("sagemaker")
        seen = statuses(committed)
        assert "failed" not in seen.values(), seen
        done = {run_id for run_id, status in seen.items() if status == "completed"}
        if not unprocessed_submits(committed) and done == finishing:
            break
        time.sleep(0.02)  # lets a short poll back-off run out
    faults.enabled = False

    # Whatever the last rounds left unseen, one quiet poll settles.
    def settled() -> bool:
        poll_once("sagemaker")
        seen = statuses(committed)
        return all(
            status == ("completed" if run_id in finishing else "running")
            for run_id, status in seen.items()
        )

    wait_for(settled, timeout=10)
    assert not unprocessed_submits(committed)
    # Exactly one job per run: moto made each once, and every repeated CreateTrainingJob
    # followed an answer lost after the job had been made.
    assert create_log.accepted == Counter(names.values())
    for name in names.values():
        assert create_log.requests[name] - 1 <= faults.lost[name], name
    assert len(jobs) == RUNS
    with committed() as session:
        for run in session.scalars(select(TrainingRun)):
            assert run.external_id == jobs[names[str(run.id)]].arn
        deferred = session.scalars(select(OutboxMessage).where(OutboxMessage.attempts > 0)).all()
    # The faults really hit: retries inside botocore, and past them, in Stratus.
    assert faults.throttled["CreateTrainingJob"] > 0
    assert faults.throttled["ListTrainingJobs"] > 0
    assert sum(faults.lost.values()) > 0
    assert deferred, "no submit was deferred by a throttled CreateTrainingJob"
    assert "polling sagemaker failed" in caplog.text
