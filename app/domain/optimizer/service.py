"""The optimizer's glue: load a deployment's window, call the pure core, store the decision,
set the absolute target. The math lives in ``app.optimizer`` (no database there)."""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.backends.prices import hourly_price
from app.backends.registry import metrics_period_s
from app.domain.access import Principal, Role, visible
from app.domain.audit import service as audit
from app.domain.deployments import lifecycle
from app.domain.deployments import repository as deployments_repo
from app.domain.deployments.models import Deployment
from app.domain.deployments.states import DeploymentStatus
from app.domain.events import subjects as events
from app.domain.optimizer import history, repository
from app.domain.optimizer.models import OptimizerDecision
from app.domain.optimizer.schemas import DecisionRead, WhatIfRead, WhatIfRequest
from app.domain.pagination import PageRequest
from app.domain.quotas import service as quotas
from app.errors import NotFound, Unprocessable
from app.observability import prometheus
from app.optimizer import Observation, Policy, State, Window, decide, fit, what_if
from app.optimizer.foresight import SEASON_TTL_S
from app.settings import get_settings

log = logging.getLogger(__name__)
NAMES = (
    "invocations",
    "latency_p95_ms",
    "latency_mean_ms",
    "instances",
    "errors_4xx",
    "errors_5xx",
    "bytes_in",
)
# Local instances cost nothing; the core needs a positive price, and only ratios matter.
FREE = 1e-6


def policy_for(deployment: Deployment) -> Policy:
    """The core's policy from the deployment's scaling policy, bounds and instance price."""
    price = hourly_price(deployment.instance_type) or FREE
    return Policy.from_mapping(
        deployment.scaling_policy,
        min_instances=deployment.min_instances,
        max_instances=deployment.max_instances,
        price_per_instance_hour=max(price, FREE),
    )


def observations(
    session: Session, deployment: Deployment, since: datetime, until: datetime
) -> list[Observation]:
    """One observation per metric period: instances, offered load, p95/mean latency, errors."""
    period = float(metrics_period_s(deployment.backend))
    buckets: dict[datetime, dict[str, float]] = defaultdict(dict)
    for name, ts, value in repository.window_points(session, deployment.id, NAMES, since, until):
        buckets[ts][name] = value
    out = []
    for ts, m in sorted(buckets.items()):
        if m.get("invocations", 0) <= 0 or "latency_p95_ms" not in m:
            continue  # an idle period says nothing about latency
        out.append(
            Observation(
                t_s=ts.timestamp(),
                instances=max(1, round(m.get("instances", deployment.current_instances))),
                load_rps=m["invocations"] / period,
                p95_ms=m["latency_p95_ms"],
                mean_ms=m.get("latency_mean_ms"),
                errors=int(m.get("errors_4xx", 0) + m.get("errors_5xx", 0)),
                bytes_per_s=m["bytes_in"] / period if "bytes_in" in m else None,
            )
        )
    return out


def _state(session: Session, deployment: Deployment) -> State:
    history = repository.pass_history(session, deployment.id)
    out, into = history.last_scale_out, history.last_scale_in
    return State(
        current_instances=max(1, deployment.current_instances),
        last_scale_out_s=out.timestamp() if out else None,
        last_scale_in_s=into.timestamp() if into else None,
        latency_target_ms=history.latency_target_ms,
    )


def _window_and_state(
    session: Session, deployment: Deployment, start: datetime, end: datetime
) -> tuple[Window, State]:
    """The pass's window and state: the recent metric periods and, when the deployment's
    pattern scan is due (hourly), its long history downsampled before them."""
    now = end.timestamp()
    scan = history.cached_scan(deployment.id)
    fresh = scan is not None and scan.fresh(now, SEASON_TTL_S)
    older = (
        []
        if fresh
        else history.downsampled(
            session, deployment, start, float(metrics_period_s(deployment.backend))
        )
    )
    recent = observations(session, deployment, start, end)
    state = replace(_state(session, deployment), season=scan if fresh else None)
    return Window.of([*older, *recent], now_s=now), state


def optimize(session: Session, deployment_id: uuid.UUID, window_end: datetime) -> bool:
    """One decision for one deployment and window; True when it changed the desired count.

    Idempotent: a second call for the same window finds the decision and does nothing.
    """
    deployment = deployments_repo.get(session, deployment_id)
    if deployment is None or deployment.status != DeploymentStatus.IN_SERVICE:
        return False  # mid-change or gone: the next pass decides
    if not deployment.scaling_policy.get("optimizer_enabled"):
        return False
    if repository.exists(session, deployment.id, window_end):
        return False
    window_start = window_end - timedelta(seconds=get_settings().optimizer.window_s)
    policy = policy_for(deployment)
    window, state = _window_and_state(session, deployment, window_start, window_end)
    decision = decide(window, policy, state)
    if decision.season is not None:
        history.keep_scan(deployment.id, decision.season)
    wanted = min(
        max(decision.desired_instances, deployment.min_instances), deployment.max_instances
    )
    target = quotas.clamp_desired(session, deployment, wanted)
    reason = decision.reason
    if target != wanted:
        reason += (
            f" Held at {target} instead of {wanted}: the project's instance quota is full"
            f" ({quotas.INSTANCES_SETTING})."
        )
    row = OptimizerDecision(
        deployment_id=deployment.id,
        project_id=deployment.project_id,
        window_start=window_start,
        window_end=window_end,
        mode=decision.mode,
        action=decision.action,
        previous_instances=decision.previous_instances,
        desired_instances=target,
        applied=target != deployment.desired_instances,
        reason=reason,
        details=decision.to_dict(),
        policy=policy.to_dict(),
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        return False  # a concurrent pass decided this window first
    prometheus.OPTIMIZER_DECISIONS.labels(mode=row.mode, applied=str(row.applied).lower()).inc()
    if not row.applied:
        return False
    if not deployments_repo.guarded_update(
        session, deployment.id, DeploymentStatus.IN_SERVICE, {"desired_instances": target}
    ):
        row.applied = False
        return False
    audit.record(
        session,
        None,
        "deployment.optimize",
        "deployment",
        deployment.id,
        deployment.project_id,
        {"from": deployment.desired_instances, "to": target, "mode": decision.mode},
    )
    events.deployment_scaled(session, deployment.id, row.previous_instances, reason, row.mode)
    lifecycle.reconcile(session, deployment.id)
    return True


def list_decisions(
    session: Session, principal: Principal, deployment_id: uuid.UUID, page: PageRequest
) -> tuple[list[DecisionRead], str | None]:
    """A deployment's decisions, newest first (viewers)."""
    _visible(session, principal, deployment_id)
    rows, cursor = repository.list_for_deployment(session, deployment_id, page)
    return [DecisionRead.model_validate(r) for r in rows], cursor


def latest_decision(
    session: Session, principal: Principal, deployment_id: uuid.UUID
) -> DecisionRead:
    _visible(session, principal, deployment_id)
    row = repository.latest(session, deployment_id)
    if row is None:
        raise NotFound(
            "The optimizer has made no decision for this deployment yet.", code="no_decision"
        )
    return DecisionRead.model_validate(row)


def evaluate(
    session: Session,
    principal: Principal,
    deployment_id: uuid.UUID,
    data: WhatIfRequest,
    now: datetime,
) -> WhatIfRead:
    """Predicted p95, E and cost of any instance counts from the deployment's current window."""
    deployment = _visible(session, principal, deployment_id)
    outside = [c for c in data.instances if not 1 <= c <= deployment.max_instances]
    if outside:
        raise Unprocessable(
            f"instances must each lie in 1..{deployment.max_instances} (the deployment's "
            f"max_instances); got {sorted(set(outside))[:10]}",
            code="validation_error",
        )
    since = now - timedelta(seconds=get_settings().optimizer.window_s)
    window = Window.of(observations(session, deployment, since, now), now_s=now.timestamp())
    policy = policy_for(deployment)
    rows = what_if(window, policy, data.counts(), data.load_rps)
    fitted = fit(window, criteria=policy.fit_criteria()) if window.arrays.n else None
    note = (
        "no metric periods with traffic in the window yet"
        if not rows
        else (
            "predictions from a trustworthy fit"
            if fitted and fitted.trustworthy
            else "the fit is not trustworthy yet: treat predictions with caution"
        )
    )
    return WhatIfRead(
        deployment_id=deployment.id,
        window=window.summary(),
        fit=fitted.to_dict() if fitted else None,
        candidates=[c.to_dict() for c in rows],
        note=note,
    )


def _visible(session: Session, principal: Principal, deployment_id: uuid.UUID) -> Deployment:
    deployment = deployments_repo.get(session, deployment_id)
    return visible(session, principal, deployment, Role.VIEWER, "Deployment", deployment_id)
