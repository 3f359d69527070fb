"""Evaluation tasks: submit and stop (woken by the outbox relay). They run the job pipeline of
runs (``workers/tasks/runs.py``) with the evaluations' kind; the run poller polls them too."""

from __future__ import annotations

from app.domain.evaluations.lifecycle import EVALUATIONS
from workers.celery_app import celery_app
from workers.tasks.runs import stop_job, submit_job
from workers.tasks.work import exclusive


@celery_app.task(name="stratus.evaluations.submit")
def submit_evaluation(message_id: int) -> None:
    """Submit the evaluation named by an outbox message to its backend (exactly once)."""
    with exclusive(message_id) as holding:
        if holding:
            submit_job(message_id, EVALUATIONS)


@celery_app.task(name="stratus.evaluations.stop")
def stop_evaluation(message_id: int) -> None:
    """Ask the backend to stop the job of an evaluation in ``stopping``."""
    with exclusive(message_id) as holding:
        if holding:
            stop_job(message_id, EVALUATIONS)
