"""What each console page shows, gathered from the same service functions the API calls.

Each function takes the Session first and returns plain values for a template; nothing here
queries the database itself."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any, Literal

from sqlalchemy.orm import Session

from app.clock import utcnow
from app.domain import backend_calls
from app.domain.access import RANK, Principal, Role, authorize
from app.domain.costs import service as costs
from app.domain.costs.accounting import priced
from app.domain.deployments import service as deployments
from app.domain.metrics import service as metrics
from app.domain.model_versions import service as models
from app.domain.optimizer import service as optimizer
from app.domain.optimizer.schemas import DecisionRead, WhatIfRequest
from app.domain.pagination import PageRequest
from app.domain.projects import service as projects
from app.domain.runs import service as runs
from app.domain.runs.schemas import RunRead
from app.domain.runs.states import TERMINAL, RunStatus
from app.errors import NotFound
from app.ui import charts

RUNS_PER_PAGE = 25
LIST_LIMIT = 50
DECISIONS_SHOWN = 50
DECISIONS_CHARTED = 1000
MAX_COMPARED = 8
XAxis = Literal["time", "step"]
Span = Literal["hour", "day", "week", "all"]
SPANS = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}


def can_edit(session: Session, principal: Principal, project_id: uuid.UUID) -> bool:
    """Whether the caller may change things in the project (editor or owner)."""
    role = authorize(session, principal, project_id, Role.VIEWER)
    return RANK[role] >= RANK[Role.EDITOR]


def projects_page(session: Session, principal: Principal) -> dict[str, Any]:
    """The projects the caller sees, with what each has spent against its budget."""
    items, _ = projects.list_projects(session, principal, PageRequest(limit=500))
    return {"projects": items}


def project_page(
    session: Session,
    principal: Principal,
    project_id: uuid.UUID,
    status: RunStatus | None,
    cursor: str | None,
) -> dict[str, Any]:
    """A project's runs (filtered, paged), model versions, deployments and costs."""
    project = projects.get_project(session, principal, project_id)
    run_items, next_cursor = project_runs(session, principal, project_id, status, cursor)
    model_items, _ = models.list_model_versions(
        session, principal, project_id, PageRequest(limit=LIST_LIMIT)
    )
    deployment_items, _ = deployments.list_deployments(
        session, principal, project_id, PageRequest(limit=LIST_LIMIT)
    )
    return {
        "project": project,
        "runs": run_items,
        "next_cursor": next_cursor,
        "status": status,
        "statuses": list(RunStatus),
        "models": model_items,
        "deployments": deployment_items,
        "costs": costs.project_costs(session, principal, project_id),
    }


def project_runs(
    session: Session,
    principal: Principal,
    project_id: uuid.UUID,
    status: RunStatus | None,
    cursor: str | None,
) -> tuple[list[RunRead], str | None]:
    """One page of a project's runs, newest first, optionally in one status."""
    page = PageRequest(cursor=cursor, limit=RUNS_PER_PAGE)
    return runs.list_runs(session, principal, project_id, page, status)


def run_page(session: Session, principal: Principal, run_id: uuid.UUID) -> dict[str, Any]:
    """A run, its project, the model version it produced and whether the caller may stop it."""
    run = runs.get_run(session, principal, run_id)
    return {
        "run": run,
        "project": projects.get_project(session, principal, run.project_id),
        "model": models.model_version_of_run(session, principal, run_id),
        "can_edit": can_edit(session, principal, run.project_id),
        "terminal": run.status in TERMINAL,
        "hyperparameters": run.spec.get("hyperparameters") or {},
    }


def run_charts(
    session: Session, principal: Principal, run_id: uuid.UUID, buckets: int, x_axis: XAxis
) -> list[charts.Chart]:
    """A run's metrics, one chart each against time or step, downsampled to ``buckets``."""
    if x_axis == "step":
        return charts.run_step_charts(
            metrics.step_series(session, principal, "run", run_id, buckets)
        )
    return charts.run_charts(metrics.series(session, principal, "run", run_id, None, buckets))


def parse_run_ids(text: str) -> list[uuid.UUID]:
    """``ID,ID,...`` as run ids (duplicates dropped, order kept); 404 on anything else."""
    ids: list[uuid.UUID] = []
    for part in text.split(","):
        try:
            run_id = uuid.UUID(part.strip())
        except ValueError as error:
            raise NotFound(f"{part.strip()[:40]!r} is not a run id.") from error
        if run_id not in ids:
            ids.append(run_id)
    if not 1 <= len(ids) <= MAX_COMPARED:
        raise NotFound(f"Compare takes 1 to {MAX_COMPARED} runs.")
    return ids


def compare_page(
    session: Session, principal: Principal, run_ids: list[uuid.UUID], buckets: int
) -> dict[str, Any]:
    """Runs side by side: their metrics overlaid and their parameters, differences marked."""
    items = [runs.get_run(session, principal, run_id) for run_id in run_ids]
    named = []
    for r in items:
        label = f"{r.name} ({str(r.id)[-6:]})"
        named.append((label, metrics.series(session, principal, "run", r.id, None, buckets)))
    params = [{**(r.spec.get("hyperparameters") or {})} for r in items]
    rows = []
    for key in sorted({k for p in params for k in p}):
        values = [p.get(key) for p in params]
        rows.append({"name": key, "cells": values, "differs": len({repr(v) for v in values}) > 1})
    finals = sorted({k for r in items for k in r.final_metrics})
    return {
        "runs": items,
        "param_rows": rows,
        "final_names": finals,
        "charts": charts.compare_charts(named),
    }


def deployment_page(
    session: Session, principal: Principal, deployment_id: uuid.UUID
) -> dict[str, Any]:
    """A deployment, its latest decisions, and whether the caller may scale or delete it."""
    deployment = deployments.get_deployment(session, principal, deployment_id)
    return {
        "deployment": deployment,
        "project": projects.get_project(session, principal, deployment.project_id),
        "decisions": decisions(session, principal, deployment_id),
        "can_edit": can_edit(session, principal, deployment.project_id),
        "hourly_usd": priced(deployment.instance_type, 3600.0),
    }


def decisions(
    session: Session, principal: Principal, deployment_id: uuid.UUID, limit: int = DECISIONS_SHOWN
) -> list[DecisionRead]:
    """The deployment's latest decisions, newest first."""
    items, _ = optimizer.list_decisions(session, principal, deployment_id, PageRequest(limit=limit))
    return items


def deployment_charts(
    session: Session,
    principal: Principal,
    deployment_id: uuid.UUID,
    buckets: int,
    span: Span,
) -> list[charts.Chart]:
    """Instances and load, p95 against the SLO, and cost over the last ``span`` (or the whole
    history), downsampled to ``buckets`` points."""
    deployment = deployments.get_deployment(session, principal, deployment_id)
    names = ["instances", "invocations", "latency_p95_ms"]
    since = None if span == "all" else utcnow() - SPANS[span]
    series = metrics.series(session, principal, "deployment", deployment_id, names, buckets, since)
    return charts.deployment_charts(
        series,
        decisions(session, principal, deployment_id, DECISIONS_CHARTED),
        deployment.desired_instances,
        deployment.updated_at,
        backend_calls.metrics_period(deployment.backend),
        deployment.scaling_policy.latency_slo_ms,
        priced(deployment.instance_type, 3600.0),
    )


def what_if(
    session: Session, principal: Principal, deployment_id: uuid.UUID, request: WhatIfRequest
) -> dict[str, Any]:
    """The what-if table for a deployment, with its page."""
    page = deployment_page(session, principal, deployment_id)
    page["what_if"] = optimizer.evaluate(session, principal, deployment_id, request, utcnow())
    return page
