"""Row factories: real rows through the same services the API uses, or direct inserts
where a state cannot be reached through the API yet."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.domain.access import Principal, Role
from app.domain.api_keys.service import issue_key
from app.domain.bundles.models import CodeBundle
from app.domain.deployments.models import Deployment
from app.domain.deployments.schemas import ScalingPolicy
from app.domain.evaluations.models import Evaluation
from app.domain.events.service import record_event
from app.domain.model_versions.models import ModelVersion
from app.domain.model_versions.repository import next_version
from app.domain.optimizer.models import OptimizerDecision
from app.domain.projects.models import Membership, Project
from app.domain.runs.models import TrainingRun
from app.domain.webhooks.models import Webhook, WebhookDelivery

PEPPER = "test-pepper-0123456789abcdef"
RECOMMENDER = Path(__file__).resolve().parents[1] / "examples" / "recommender"
# A local run spec valid at create time under the test settings' host roots.
LOCAL_SPEC: dict[str, Any] = {
    "entrypoint": "train.py",
    "source_dir": str(RECOMMENDER),
    "instance_type": "local",
}


@dataclass(frozen=True)
class Key:
    """A principal and its secret, with the header that sends it."""

    principal: Principal
    secret: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}

    @property
    def id(self) -> uuid.UUID:
        return self.principal.id


def make_key(session: Session, *, admin: bool = False, name: str | None = None) -> Key:
    created = issue_key(session, name or f"key-{uuid.uuid4().hex[:6]}", admin, PEPPER, None)
    session.flush()
    return Key(Principal(created.id, created.name, created.admin), created.secret)


def make_project(session: Session, *members: tuple[Key, Role], **fields: Any) -> Project:
    project = Project(
        name=fields.pop("name", f"p-{uuid.uuid4().hex[:10]}"),
        description=fields.pop("description", ""),
        default_backend=fields.pop("default_backend", "local"),
        **fields,
    )
    session.add(project)
    session.flush()
    for key, role in members:
        session.add(Membership(project_id=project.id, principal_id=key.id, role=role))
    session.flush()
    return project


def make_run(session: Session, project: Project, **fields: Any) -> TrainingRun:
    """A run row in any state (states past ``pending`` come from backends, not the API)."""
    run = TrainingRun(
        project_id=project.id,
        name=fields.pop("name", f"run-{uuid.uuid4().hex[:6]}"),
        backend=fields.pop("backend", project.default_backend),
        spec=fields.pop("spec", {"entrypoint": "train.py", "instance_type": "local"}),
        status=fields.pop("status", "pending"),
        final_metrics=fields.pop("final_metrics", {}),
        **fields,
    )
    session.add(run)
    session.flush()
    return run


def make_model_version(session: Session, project: Project, **fields: Any) -> ModelVersion:
    """A model version row; ``version`` defaults to the next one of its name."""
    name = fields.pop("name", "model")
    if "version" not in fields:
        fields["version"] = next_version(session, project.id, name)
    model = ModelVersion(
        project_id=project.id,
        name=name,
        artifact_uri=fields.pop("artifact_uri", f"file:///models/{name}/{uuid.uuid4().hex[:8]}"),
        metrics=fields.pop("metrics", {}),
        **fields,
    )
    session.add(model)
    session.flush()
    return model


def make_evaluation(session: Session, model: ModelVersion, **fields: Any) -> Evaluation:
    """An evaluation row of a model version in any state (``pending`` by default)."""
    evaluation = Evaluation(
        project_id=model.project_id,
        model_version_id=model.id,
        name=fields.pop("name", "holdout"),
        backend=fields.pop("backend", "local"),
        spec=fields.pop("spec", {"entrypoint": "evaluate.py"}),
        status=fields.pop("status", "pending"),
        final_metrics=fields.pop("final_metrics", {}),
        **fields,
    )
    if evaluation.status == "completed" and evaluation.ended_at is None:
        evaluation.ended_at = utcnow()
    session.add(evaluation)
    session.flush()
    return evaluation


def make_deployment(
    session: Session, project: Project, model: ModelVersion | None = None, **fields: Any
) -> Deployment:
    """A deployment row in any state (states past ``creating`` come from workers)."""
    model = model or make_model_version(session, project)
    deployment = Deployment(
        project_id=project.id,
        model_version_id=model.id,
        name=fields.pop("name", f"d-{uuid.uuid4().hex[:8]}"),
        backend=fields.pop("backend", project.default_backend),
        instance_type=fields.pop("instance_type", "local"),
        desired_instances=fields.pop("desired_instances", 1),
        current_instances=fields.pop("current_instances", 0),
        min_instances=fields.pop("min_instances", 1),
        max_instances=fields.pop("max_instances", 4),
        scaling_policy=fields.pop("scaling_policy", ScalingPolicy().model_dump(mode="json")),
        status=fields.pop("status", "creating"),
        **fields,
    )
    session.add(deployment)
    session.flush()
    return deployment


def make_decision(session: Session, deployment: Deployment, **fields: Any) -> OptimizerDecision:
    """A stored optimizer decision for a deployment."""
    now = utcnow()
    decision = OptimizerDecision(
        deployment_id=deployment.id,
        project_id=deployment.project_id,
        window_start=fields.pop("window_start", now - timedelta(hours=1)),
        window_end=fields.pop("window_end", now),
        mode=fields.pop("mode", "model"),
        action=fields.pop("action", "hold"),
        previous_instances=fields.pop("previous_instances", deployment.current_instances),
        desired_instances=fields.pop("desired_instances", deployment.desired_instances),
        applied=fields.pop("applied", False),
        reason=fields.pop("reason", "holding: p95 meets the SLO at the current count."),
        details=fields.pop("details", {}),
        policy=fields.pop("policy", {}),
        **fields,
    )
    session.add(decision)
    session.flush()
    return decision


def make_bundle(session: Session, project: Project, **fields: Any) -> CodeBundle:
    """A code bundle row (its bytes are not in any store unless the test puts them there)."""
    manifest = fields.pop("manifest", ["train.py"])
    bundle = CodeBundle(
        project_id=project.id,
        sha256=fields.pop("sha256", uuid.uuid4().hex * 2),
        size_bytes=fields.pop("size_bytes", 100),
        file_count=fields.pop("file_count", len(manifest)),
        unpacked_bytes=fields.pop("unpacked_bytes", 100),
        manifest=manifest,
        **fields,
    )
    session.add(bundle)
    session.flush()
    return bundle


def make_webhook(
    session: Session, project: Project, **fields: Any
) -> tuple[Webhook, WebhookDelivery]:
    """A webhook of the project subscribed to every event, and a delivery of one event to it."""
    webhook = Webhook(
        project_id=project.id,
        url=fields.pop("url", "https://hooks.example.com/stratus"),
        events=fields.pop("events", ["*"]),
        status=fields.pop("status", "active"),
        secret_salt=fields.pop("secret_salt", uuid.uuid4().hex),
        **fields,
    )
    session.add(webhook)
    session.flush()
    record_event(session, "budget.exceeded", project.id, project.id, {"id": str(project.id)})
    delivery = session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook.id)
    ).one()
    return webhook, delivery
