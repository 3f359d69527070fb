"""Exactly once across processes: a worker SIGKILLed after the cloud accepted its job, and
two workers that both created one."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from app.backends.base import JobState
from tests.backends.contract.clouds import CloudHarness

ROOT = Path(__file__).resolve().parents[3]


def test_a_worker_killed_after_the_cloud_accepted_leaves_one_job(cloud: CloudHarness) -> None:
    spec = cloud.job_spec()
    cloud.fake.hold = threading.Event()  # the cloud does the work, then holds its answer
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.backends.contract.submit_child",
            cloud.name,
            json.dumps(dataclasses.asdict(spec)),
        ],
        cwd=ROOT,
        env=os.environ.copy(),
    )
    try:
        assert cloud.fake.held.wait(60), "the child never reached the cloud"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    hold, cloud.fake.hold = cloud.fake.hold, None
    hold.set()
    assert child.returncode == -signal.SIGKILL
    assert cloud.jobs_named(spec.job_name) == 1

    # The message is delivered again: the retry finds the job rather than making another.
    found = cloud.backend.describe_jobs({spec.job_name: JobState.UNKNOWN})
    assert spec.job_name in found
    assert cloud.backend.submit_training(spec) == found[spec.job_name].external_id
    assert cloud.jobs_named(spec.job_name) == 1


def test_when_two_workers_both_created_a_job_the_oldest_is_kept(cloud: CloudHarness) -> None:
    if cloud.name == "azureml":
        pytest.skip("Azure ML job ids are the Stratus name: a second create is refused")
    spec = cloud.job_spec()
    first = cloud.backend.submit_training(spec)
    # Another worker that listed before the first create landed makes its own job.
    if cloud.name == "vertex":
        body = cloud.backend.http.must("GET", f"/{first}")  # type: ignore[attr-defined]
        path = f"/{first.rsplit('/', 1)[0]}"
    else:
        body = cloud.backend.http.must(  # type: ignore[attr-defined]
            "GET",
            f"/ml/v4/trainings/{first}",
            params=cloud.backend.scope,  # type: ignore[attr-defined]
        )["entity"]
        path = "/ml/v4/trainings"
    params = getattr(cloud.backend, "scope", None)
    cloud.backend.http.must("POST", path, json=body, params=params)  # type: ignore[attr-defined]
    assert cloud.jobs_named(spec.job_name) == 2

    assert cloud.backend.submit_training(spec) == first  # both workers agree on the oldest
    status = cloud.backend.describe_jobs({spec.job_name: JobState.UNKNOWN})[spec.job_name]
    assert status.external_id == first
    assert status.state in (JobState.STARTING, JobState.RUNNING)
    cloud.settle()
    assert _running(cloud) == [first]  # the duplicate was cancelled


def _running(cloud: CloudHarness) -> list[str]:
    """Ids of the fake's jobs that are still running (cancelled duplicates are not)."""
    fake = cloud.fake
    if cloud.name == "vertex":
        return [j["name"] for j in fake.jobs.values() if j["state"] == "JOB_STATE_RUNNING"]  # type: ignore[attr-defined]
    return [
        i
        for i, j in fake.trainings.items()
        if j["entity"]["status"]["state"] == "running"  # type: ignore[attr-defined]
    ]
