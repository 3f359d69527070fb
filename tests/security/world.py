"""A small world for authorization tests: two projects, a key per role, one object of each
kind in each project."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.domain.access import Role
from app.domain.aliases.models import ModelAlias
from app.domain.bundles.models import CodeBundle
from app.domain.deployments.models import Deployment
from app.domain.evaluations.models import Evaluation
from app.domain.model_versions.models import ModelVersion
from app.domain.projects.models import Project
from app.domain.projects.schemas import EXAMPLE_PREFIX
from app.domain.runs.models import TrainingRun
from app.domain.webhooks.models import Webhook, WebhookDelivery
from tests.factories import (
    Key,
    make_bundle,
    make_decision,
    make_deployment,
    make_evaluation,
    make_key,
    make_model_version,
    make_project,
    make_run,
    make_webhook,
)

OWN_PREFIX = "s3://bucket/own/"
OTHER_PREFIX = "s3://bucket/other/"


@dataclass
class Side:
    project: Project
    run: TrainingRun
    model: ModelVersion
    deployment: Deployment
    bundle: CodeBundle
    webhook: Webhook
    delivery: WebhookDelivery
    evaluation: Evaluation


@dataclass
class World:
    keys: dict[str, Key]
    own: Side
    other: Side
    spare_key: Key
    other_owner: Key


def build_world(db: Session) -> World:
    keys = {
        "viewer": make_key(db, name="viewer"),
        "editor": make_key(db, name="editor"),
        "owner": make_key(db, name="owner"),
        "admin": make_key(db, admin=True, name="admin"),
    }
    stranger = make_key(db, name="stranger")
    own_project = make_project(
        db,
        (keys["viewer"], Role.VIEWER),
        (keys["editor"], Role.EDITOR),
        (keys["owner"], Role.OWNER),
    )
    other_project = make_project(db, (stranger, Role.OWNER))
    # Each side may name S3 under a prefix of its own (and the OpenAPI examples' prefix).
    own_project.backend_config = {"sagemaker": {"s3_prefixes": [OWN_PREFIX, EXAMPLE_PREFIX]}}
    other_project.backend_config = {"sagemaker": {"s3_prefixes": [OTHER_PREFIX]}}
    sides = []
    for project in (own_project, other_project):
        run = make_run(db, project, status="running")
        model = make_model_version(db, project)
        deployment = make_deployment(db, project, model, status="in_service")
        make_decision(db, deployment)
        webhook, delivery = make_webhook(db, project)
        evaluation = make_evaluation(db, model)
        db.add(
            ModelAlias(
                project_id=project.id,
                name=model.name,
                alias="production",
                model_version_id=model.id,
                requires={},
            )
        )
        bundle = make_bundle(db, project)
        sides.append(Side(project, run, model, deployment, bundle, webhook, delivery, evaluation))
    spare = make_key(db, name="spare")
    db.commit()
    return World(keys=keys, own=sides[0], other=sides[1], spare_key=spare, other_owner=stranger)
