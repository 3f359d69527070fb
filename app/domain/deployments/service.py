"""Deployments: create (row + outbox in one transaction), read, resize, delete, and the one
``transition()`` every writer of a deployment's status goes through."""

from __future__ import annotations

import re
import uuid
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.backends.naming import endpoint_name
from app.clock import utcnow
from app.domain.access import Principal, Role, authorize, visible
from app.domain.aliases.resolve import resolve
from app.domain.audit import service as audit
from app.domain.deployments import repository
from app.domain.deployments.models import Deployment
from app.domain.deployments.schemas import (
    DeploymentCreate,
    DeploymentRead,
    DeploymentUpdate,
    ScalingPolicy,
    bounds_problem,
)
from app.domain.deployments.states import ADJUSTABLE, MACHINE, DeploymentStatus
from app.domain.events import subjects as events
from app.domain.lifecycle import guarded_transition
from app.domain.model_versions import repository as models_repo
from app.domain.outbox import service as outbox
from app.domain.pagination import PageRequest
from app.domain.quotas import service as quotas
from app.domain.runs.validation import CLOUD_INSTANCE, CLOUDS
from app.errors import Conflict, NotFound, Unprocessable

S = DeploymentStatus
LOCAL_INSTANCE = re.compile(r"^local(?:\.[a-z0-9]+)?$")
SAGEMAKER_INSTANCE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
CAPACITY = ("desired_instances", "min_instances", "max_instances")
CLOUD_EXAMPLES = {"vertex": "n1-standard-4", "azureml": "Standard_DS3_v2", "watsonx": "S"}


def _instance_type(backend: str, given: str | None) -> str:
    """The instance type for the backend (local defaults to 'local'); 422 when it does not fit."""
    if backend == "sagemaker":
        if given is None or not SAGEMAKER_INSTANCE.match(given):
            raise Unprocessable(
                "instance_type must be a SageMaker type such as ml.m5.large on sagemaker",
                code="invalid_instance_type",
            )
        return given
    if backend in CLOUDS:
        if given is None or given == "local" or not CLOUD_INSTANCE.match(given):
            raise Unprocessable(
                f"instance_type must be a {backend} machine type (e.g. {CLOUD_EXAMPLES[backend]})",
                code="invalid_instance_type",
            )
        return given
    if given is None:
        return "local"
    if not LOCAL_INSTANCE.match(given):
        raise Unprocessable(
            "instance_type must be 'local' or 'local.<size>' on the local backend",
            code="invalid_instance_type",
        )
    return given


def create_deployment(
    session: Session, principal: Principal, project_id: uuid.UUID, data: DeploymentCreate
) -> DeploymentRead:
    """Record a deployment in ``creating``; a worker creates the endpoint after commit."""
    authorize(session, principal, project_id, Role.EDITOR)
    project = repository.lock_project(session, project_id)
    if project is None:
        raise NotFound(f"Project {project_id} not found.")
    backend = data.backend or project.default_backend
    instance_type = _instance_type(backend, data.instance_type)
    if data.model is not None:
        model = resolve(session, project_id, data.model)
    else:
        found = models_repo.get(session, data.model_version_id) if data.model_version_id else None
        if found is None or found.project_id != project_id:
            raise NotFound(f"Model version {data.model_version_id} not found.")
        model = found
    if repository.name_in_use(session, project_id, data.name):
        raise Conflict(
            f"A deployment named {data.name!r} already exists in this project.", code="name_taken"
        )
    quotas.check_deployment(session, project, instance_type, data.desired_instances)
    deployment = Deployment(
        project_id=project_id,
        model_version_id=model.id,
        follows=data.model,
        name=data.name,
        backend=backend,
        instance_type=instance_type,
        desired_instances=data.desired_instances,
        current_instances=0,
        min_instances=data.min_instances,
        max_instances=data.max_instances,
        scaling_policy=data.scaling_policy.model_dump(mode="json"),
        status=S.CREATING,
        created_by=principal.id,
    )
    session.add(deployment)
    session.flush()
    outbox.enqueue(session, outbox.DEPLOYMENT_CREATE, deployment_id=str(deployment.id))
    events.deployment_created(session, deployment.id)
    audit.record(
        session,
        principal,
        "deployment.create",
        "deployment",
        deployment.id,
        project_id,
        {
            "name": data.name,
            "model_version_id": str(model.id),
            "follows": data.model,
            "backend": backend,
        },
    )
    return DeploymentRead.model_validate(deployment)


def _load(
    session: Session, principal: Principal, deployment_id: uuid.UUID, need: Role
) -> Deployment:
    """The deployment if the caller may see it; another project's answers as missing."""
    deployment = repository.get(session, deployment_id)
    return visible(session, principal, deployment, need, "Deployment", deployment_id)


def get_deployment(
    session: Session, principal: Principal, deployment_id: uuid.UUID
) -> DeploymentRead:
    """One deployment the caller may see."""
    return DeploymentRead.model_validate(_load(session, principal, deployment_id, Role.VIEWER))


def list_deployments(
    session: Session,
    principal: Principal,
    project_id: uuid.UUID,
    page: PageRequest,
    status: DeploymentStatus | None = None,
) -> tuple[list[DeploymentRead], str | None]:
    """A project's deployments, newest first, optionally in one status."""
    authorize(session, principal, project_id, Role.VIEWER)
    rows, cursor = repository.list_for_project(session, project_id, page, status)
    return [DeploymentRead.model_validate(r) for r in rows], cursor


def _merged_changes(deployment: Deployment, data: DeploymentUpdate) -> dict[str, Any]:
    """The columns the patch really changes, validated as a whole after merging."""
    values: dict[str, Any] = data.model_dump(include=set(CAPACITY), exclude_none=True)
    merged = {k: values.get(k, getattr(deployment, k)) for k in CAPACITY}
    problem = bounds_problem(
        merged["min_instances"], merged["desired_instances"], merged["max_instances"]
    )
    if problem:
        raise Unprocessable(problem, code="invalid_bounds")
    if data.scaling_policy is not None:
        patch = data.scaling_policy.model_dump(exclude_none=True)
        try:
            policy = ScalingPolicy.model_validate({**deployment.scaling_policy, **patch})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in ("scaling_policy", *first["loc"]))
            raise Unprocessable(f"{where}: {first['msg']}", code="invalid_policy") from exc
        values["scaling_policy"] = policy.model_dump(mode="json")
    return {k: v for k, v in values.items() if getattr(deployment, k) != v}


def update_deployment(
    session: Session, principal: Principal, deployment_id: uuid.UUID, data: DeploymentUpdate
) -> DeploymentRead:
    """Change capacity bounds or the scaling policy; a live endpoint is resized by a worker."""
    deployment = _load(session, principal, deployment_id, Role.EDITOR)
    status = S(deployment.status)
    if status not in ADJUSTABLE:
        raise Conflict(f"A {status} deployment cannot be changed.", code="invalid_state")
    values = _merged_changes(deployment, data)
    if not values:
        return DeploymentRead.model_validate(deployment)
    quotas.check_resize(
        session,
        deployment,
        values.get("desired_instances", deployment.desired_instances),
        values.get("max_instances", deployment.max_instances),
    )
    # Only capacity reaches the endpoint; the policy is read by the optimizer from the row.
    resize = status == S.IN_SERVICE and any(k in values for k in CAPACITY)
    if resize:
        done = transition(session, deployment.id, status, S.UPDATING, **values)
    else:
        # creating/updating: the pending task applies the latest desired count when it runs.
        done = repository.guarded_update(
            session, deployment.id, status, {**values, "updated_at": utcnow()}
        )
    if not done:
        raise Conflict("The deployment changed state meanwhile; read it and retry.", code="stale")
    if resize:
        outbox.enqueue(session, outbox.DEPLOYMENT_UPDATE, deployment_id=str(deployment.id))
    audit.record(
        session,
        principal,
        "deployment.update",
        "deployment",
        deployment.id,
        deployment.project_id,
        {"fields": sorted(values)},
    )
    session.refresh(deployment)
    return DeploymentRead.model_validate(deployment)


def delete_deployment(
    session: Session, principal: Principal, deployment_id: uuid.UUID
) -> DeploymentRead:
    """Ask for the endpoint to be deleted; asking again while it goes away changes nothing."""
    deployment = _load(session, principal, deployment_id, Role.EDITOR)
    status = S(deployment.status)
    if status in (S.DELETING, S.DELETED):
        return DeploymentRead.model_validate(deployment)
    if not transition(session, deployment.id, status, S.DELETING):
        raise Conflict("The deployment changed state meanwhile; read it and retry.", code="stale")
    outbox.enqueue(session, outbox.DEPLOYMENT_DELETE, deployment_id=str(deployment.id))
    audit.record(
        session,
        principal,
        "deployment.delete",
        "deployment",
        deployment.id,
        deployment.project_id,
        {"from": str(status)},
    )
    session.refresh(deployment)
    return DeploymentRead.model_validate(deployment)


def transition(
    session: Session,
    deployment_id: uuid.UUID,
    expected: DeploymentStatus,
    target: DeploymentStatus,
    **values: Any,
) -> bool:
    """Move a deployment ``expected -> target`` if it is still ``expected``; False when stale.

    The API, the deployment tasks and the optimizer all write status through here. A status
    reason describes the status it came with, so it is cleared unless one is given.
    """
    values = {"updated_at": utcnow(), "status_reason": None, **values}
    if target == S.DELETED:
        values.setdefault("current_instances", 0)
    moved = guarded_transition(
        session, MACHINE, repository.ROWS, deployment_id, expected, target, values
    )
    if moved:
        events.deployment_status(session, deployment_id, target)
    return moved


def roll_to_version(
    session: Session, deployment_id: uuid.UUID, model_version_id: uuid.UUID
) -> bool:
    """Point a deployment at another model version; a worker rolls its endpoint over (new
    replicas ready before old ones drain). False when it serves that version already."""
    deployment = repository.get(session, deployment_id)
    if deployment is None or deployment.model_version_id == model_version_id:
        return False
    status = S(deployment.status)
    if status not in ADJUSTABLE:
        return False
    values = {"model_version_id": model_version_id, "updated_at": utcnow()}
    if not repository.guarded_update(session, deployment.id, status, values):
        return False
    outbox.enqueue(session, outbox.DEPLOYMENT_ROLL, deployment_id=str(deployment.id))
    return True


def record_backend_unavailable(session: Session, deployment_id: uuid.UUID, reason: str) -> None:
    """Say on the deployment why it is still waiting (no status change)."""
    deployment = repository.get(session, deployment_id)
    if deployment is not None and deployment.status_reason != reason:
        deployment.status_reason = reason


def invocation_target(
    session: Session, principal: Principal, deployment_id: uuid.UUID
) -> tuple[str, str]:
    """(backend, endpoint name) of a deployment that serves traffic (editors)."""
    deployment = _load(session, principal, deployment_id, Role.EDITOR)
    if deployment.status not in (S.IN_SERVICE, S.UPDATING):
        raise Conflict(
            f"The deployment is {deployment.status}; it serves requests once in_service.",
            code="not_serving",
        )
    return deployment.backend, endpoint_name(deployment.id)
