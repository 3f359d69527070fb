"""The training half of the backend contract: exactly-once submission under duplicate delivery
and lost answers, throttling waited out, stop, and polling that reports only what changed."""

from __future__ import annotations

from typing import Any

import pytest

from app.backends.base import BackendError, JobState
from tests.backends.contract.helpers import wait_job


def test_submitting_twice_makes_one_job(harness: Any) -> None:
    spec = harness.job_spec()

    first = harness.backend.submit_training(spec)
    again = harness.backend.submit_training(spec)  # the same message delivered twice

    assert first == again
    assert harness.jobs_named(spec.job_name) == 1


def test_a_submit_whose_answer_was_lost_is_found_by_the_retry(harness: Any) -> None:
    spec = harness.job_spec()
    harness.lose_next_submit_answer()

    answered: str | None = None
    failure: BackendError | None = None
    try:  # an idempotent create (a PUT by name) is retried by the client itself
        answered = harness.backend.submit_training(spec)
    except BackendError as lost:
        failure = lost
    assert failure is None or failure.retryable

    # The worker's retry looks first, as workers.tasks.runs does, then submits if need be.
    found = harness.backend.describe_jobs({spec.job_name: JobState.UNKNOWN})
    assert spec.job_name in found
    assert harness.backend.submit_training(spec) == found[spec.job_name].external_id
    assert answered in (None, found[spec.job_name].external_id)
    assert harness.jobs_named(spec.job_name) == 1


def test_throttling_is_waited_out_and_persistent_throttling_is_retryable(harness: Any) -> None:
    spec = harness.job_spec()
    harness.backend.submit_training(spec)
    harness.throttle(2)

    assert spec.job_name in harness.backend.describe_jobs({spec.job_name: JobState.UNKNOWN})

    harness.throttle(1000)
    with pytest.raises(BackendError) as throttled:
        harness.backend.describe_jobs({spec.job_name: JobState.UNKNOWN})
    assert throttled.value.retryable
    harness.throttle(0)


def test_stop_ends_a_running_job_and_is_idempotent(harness: Any) -> None:
    spec = harness.job_spec()
    harness.backend.submit_training(spec)
    wait_job(harness, spec.job_name, JobState.RUNNING)

    harness.backend.stop_training(spec.job_name)
    harness.backend.stop_training(spec.job_name)  # a stop delivered twice

    assert wait_job(harness, spec.job_name, JobState.STOPPED).state == JobState.STOPPED
    harness.backend.stop_training(spec.job_name)  # a finished job: nothing to do
    harness.backend.stop_training(harness.job_spec().job_name)  # an unknown one: the same


def test_polling_reports_what_changed_and_only_that(harness: Any) -> None:
    specs = [harness.job_spec() for _ in range(3)]
    for spec in specs:
        harness.backend.submit_training(spec)
    for spec in specs:
        wait_job(harness, spec.job_name, JobState.RUNNING)
    known = {spec.job_name: JobState.RUNNING for spec in specs}

    before = harness.api_calls()
    assert harness.backend.describe_jobs(known) == {}
    quiet = harness.api_calls() - before

    done, failed, running = (spec.job_name for spec in specs)
    harness.finish(done, ok=True)
    harness.finish(failed, ok=False)
    harness.settle()

    def both() -> dict[str, Any]:
        reported = dict(harness.backend.describe_jobs(known))
        return reported if len(reported) == 2 else {}

    before = harness.api_calls()
    reported = _eventually(both)
    moved = harness.api_calls() - before

    assert {n: s.state for n, s in reported.items()} == {
        done: JobState.COMPLETED,
        failed: JobState.FAILED,
    }
    assert reported[failed].failure_reason
    assert running not in reported
    if harness.counts_calls:  # one list page, plus at most one call per job that moved
        assert quiet <= 1
        assert moved <= 1 + 2


def _eventually(check: Any, attempts: int = 200) -> Any:
    import time

    for _ in range(attempts):
        value = check()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail("the backend never reported the change")
