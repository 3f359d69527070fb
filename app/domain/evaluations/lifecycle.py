"""An evaluation's life on its backend: the job pipeline of runs (submit, stop, poll, live
metrics; ``runs.lifecycle``) driven with the evaluation's kind."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.backends.base import TrainingJobSpec, evaluation_backend
from app.backends.naming import evaluation_job_name
from app.domain.evaluations import repository, service
from app.domain.evaluations.models import Evaluation
from app.domain.jobs import JobKind
from app.domain.model_versions import repository as models_repo
from app.domain.outbox import service as outbox
from app.domain.runs.lifecycle import job_spec


def _build_spec(
    session: Session, evaluation: Evaluation, role_arn: str | None, code_uri: str | None
) -> TrainingJobSpec:
    model = models_repo.get(session, evaluation.model_version_id)
    tags = {
        "stratus:project-id": str(evaluation.project_id),
        "stratus:evaluation-id": str(evaluation.id),
    }
    spec = dict(evaluation.spec)
    if model is not None and model.framework:  # a SageMaker job runs in the model's framework
        spec.setdefault("framework", model.framework)
    return job_spec(
        evaluation_job_name(evaluation.id),
        spec,
        role_arn,
        code_uri,
        tags,
        model_uri=model.artifact_uri if model is not None else None,
    )


def _nothing_more(session: Session, evaluation: Evaluation) -> None:
    """An evaluation's results are its metrics, already stored with its end."""


EVALUATIONS = JobKind(
    noun="evaluation",
    rows=repository.ROWS,
    transition=service.transition,
    job_name=evaluation_job_name,
    list_in_flight=repository.list_in_flight,
    build_spec=_build_spec,
    on_complete=_nothing_more,
    stop_topic=outbox.EVALUATION_STOP,
    submit=lambda backend, spec: evaluation_backend(backend).submit_evaluation(spec),
    describe=lambda backend, known, since: evaluation_backend(backend).describe_evaluations(
        known, since
    ),
    stop=lambda backend, name: evaluation_backend(backend).stop_evaluation(name),
    fetch_metrics=lambda backend, name, cursor: evaluation_backend(
        backend
    ).fetch_evaluation_metrics(name, cursor),
)
