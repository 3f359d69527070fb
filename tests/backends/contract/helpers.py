"""Waiting on a backend through its own describe calls, moving the harness's time along."""

from __future__ import annotations

import time
from typing import Any

import pytest

from app.backends.base import EndpointState, EndpointStatus, JobState, JobStatus


def wait_job(harness: Any, job_name: str, state: JobState, timeout: float = 30.0) -> JobStatus:
    """The job's status once the backend reports ``state``."""
    deadline = time.monotonic() + timeout
    while True:
        harness.settle()
        status = harness.backend.describe_jobs({job_name: JobState.UNKNOWN}).get(job_name)
        if status is not None and status.state == state:
            return status
        if time.monotonic() > deadline:
            pytest.fail(f"{job_name} not {state} within {timeout} s (last: {status})")
        time.sleep(0.05)


def wait_endpoint(
    harness: Any, name: str, state: EndpointState, count: int | None = None, timeout: float = 60.0
) -> EndpointStatus:
    """The endpoint's status once the backend reports ``state`` (and ``count`` instances)."""
    deadline = time.monotonic() + timeout
    while True:
        harness.settle()
        status = harness.backend.describe_endpoints([name])[name]
        if status.state == state and (count is None or status.current_instances == count):
            return status
        if time.monotonic() > deadline:
            pytest.fail(f"{name} not {state}/{count} within {timeout} s (last: {status})")
        time.sleep(0.05)
