"""The console's pages and buttons through the ASGI app: what each role sees and may do, what
another project's key gets, and what bad input gets."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.clock import utcnow
from app.domain.access import Role
from app.domain.deployments.models import Deployment
from app.domain.metrics.models import MetricPoint
from app.domain.runs.models import TrainingRun
from app.settings import Settings
from tests.factories import (
    Key,
    make_decision,
    make_deployment,
    make_key,
    make_model_version,
    make_project,
    make_run,
)
from tests.ui.console import add_points, browser, sign_in

CANDIDATES = [
    {
        "instances": n,
        "load_per_instance_rps": 30.0 / n,
        "predicted_p95_ms": 300.0 / n,
        "predicted_mean_ms": 100.0 / n,
        "efficiency": 0.5 + n / 10,
        "cost_per_hour": 0.2 * n,
        "feasible": n >= 2,
    }
    for n in (1, 2, 3)
]


@dataclass
class World:
    owner: Key
    viewer: Key
    outsider: Key
    project: Any
    run: Any
    finished: Any
    deployment: Any


@pytest.fixture
def world(db: Session) -> World:
    owner, viewer, outsider = make_key(db), make_key(db), make_key(db)
    project = make_project(
        db,
        (owner, Role.OWNER),
        (viewer, Role.VIEWER),
        name="console-pages",
        description="<script>alert(1)</script>",
    )
    make_project(db, (outsider, Role.OWNER))
    run = make_run(
        db,
        project,
        name="still-running",
        status="running",
        external_id="job-1",
        spec={
            "entrypoint": "train.py",
            "instance_type": "local",
            "hyperparameters": {"lr": 0.1, "epochs": 5},
        },
    )
    finished = make_run(
        db,
        project,
        name="finished",
        status="completed",
        final_metrics={"loss": 0.25},
        spec={
            "entrypoint": "train.py",
            "instance_type": "local",
            "hyperparameters": {"lr": 0.2, "epochs": 5},
        },
    )
    model = make_model_version(db, project, name="reco", source_run_id=finished.id)
    deployment = make_deployment(
        db,
        project,
        model,
        status="in_service",
        current_instances=2,
        desired_instances=2,
        instance_type="ml.m5.large",  # priced: the page charts cost per hour
    )
    make_decision(
        db,
        deployment,
        mode="model",
        action="scale_out",
        previous_instances=1,
        desired_instances=2,
        applied=True,
        reason="scaling out: p95 would exceed the SLO at 1 instance.",
        details={"candidates": CANDIDATES},
    )
    add_points(db, project.id, "run", finished.id, loss=[1.0, 0.6, 0.4, 0.3, 0.25])
    add_points(db, project.id, "run", run.id, loss=[1.1, 0.9])
    add_points(
        db,
        project.id,
        "deployment",
        deployment.id,
        instances=[1, 1, 2, 2],
        invocations=[300, 320, 310, 330],
        latency_p95_ms=[250, 260, 120, 110],
    )
    db.commit()
    return World(owner, viewer, outsider, project, run, finished, deployment)


@pytest.fixture
def as_owner(
    settings: Settings, session_factory: sessionmaker[Session], world: World
) -> Iterator[tuple[TestClient, str]]:
    with browser(settings, session_factory) as client:
        yield client, sign_in(client, world.owner)


def test_project_page_lists_runs_models_deployments_and_costs(
    as_owner: tuple[TestClient, str], world: World
) -> None:
    client, _ = as_owner
    page = client.get(f"/ui/projects/{world.project.id}")
    assert page.status_code == 200
    for shown in ("still-running", "finished", "reco", world.deployment.name, "Costs"):
        assert shown in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text  # text, never markup
    assert "<script>alert(1)" not in page.text
    only_completed = client.get(f"/ui/projects/{world.project.id}?status=completed").text
    assert "finished" in only_completed
    assert "still-running" not in only_completed
    assert f'data-live="/ui/projects/{world.project.id}/runs?status=completed"' in only_completed
    rows = client.get(f"/ui/projects/{world.project.id}/runs?status=running").text
    assert "still-running" in rows
    assert "finished" not in rows


def test_run_page_shows_parameters_model_and_stop_for_editors(
    as_owner: tuple[TestClient, str], world: World
) -> None:
    client, _ = as_owner
    finished = client.get(f"/ui/runs/{world.finished.id}").text
    assert "reco v1" in finished
    assert "epochs" in finished
    assert 'id="stop-run"' not in finished  # nothing to stop
    assert 'id="stop-run"' in client.get(f"/ui/runs/{world.run.id}").text
    charts = client.get(f"/ui/runs/{world.finished.id}/charts.json").json()["charts"]
    assert [c["title"] for c in charts] == ["loss"]
    assert [v for v in charts[0]["lines"][0]["values"] if v is not None] == [
        1.0,
        0.6,
        0.4,
        0.3,
        0.25,
    ]
    by_step = client.get(f"/ui/runs/{world.finished.id}/charts.json?x=step").json()["charts"]
    assert [(c["x_kind"], c["x"]) for c in by_step] == [("step", [0, 1, 2, 3, 4])]
    assert by_step[0]["lines"][0]["values"] == [1.0, 0.6, 0.4, 0.3, 0.25]
    assert client.get(f"/ui/runs/{world.finished.id}/charts.json?x=epoch").status_code == 404


def test_stop_button_stops_the_run_with_a_csrf_token_only(
    as_owner: tuple[TestClient, str], world: World, db: Session
) -> None:
    client, csrf = as_owner
    url = f"/ui/runs/{world.run.id}/stop"
    assert client.post(url, data={"csrf": "stale"}).status_code == 403
    assert client.post(url, data={}).status_code == 403
    db.expire_all()
    assert db.get(TrainingRun, world.run.id).status == "running"  # type: ignore[union-attr]
    answer = client.post(url, data={"csrf": csrf})
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/ui/runs/{world.run.id}"
    db.expire_all()
    assert db.get(TrainingRun, world.run.id).status == "stopping"  # type: ignore[union-attr]
    assert client.post(url, data={"csrf": csrf}).status_code == 303  # asking again is fine
    ended = client.post(f"/ui/runs/{world.finished.id}/stop", data={"csrf": csrf})
    assert ended.status_code == 409
    assert "text/html" in ended.headers["content-type"]


def test_viewer_sees_no_buttons_and_cannot_press_them(
    settings: Settings, session_factory: sessionmaker[Session], world: World, db: Session
) -> None:
    with browser(settings, session_factory) as client:
        csrf = sign_in(client, world.viewer)
        run_page = client.get(f"/ui/runs/{world.run.id}").text
        deployment_page = client.get(f"/ui/deployments/{world.deployment.id}").text
        assert 'id="stop-run"' not in run_page
        assert "/scale" not in deployment_page
        assert "/delete" not in deployment_page
        stop = client.post(f"/ui/runs/{world.run.id}/stop", data={"csrf": csrf})
        scale = client.post(
            f"/ui/deployments/{world.deployment.id}/scale",
            data={"csrf": csrf, "desired_instances": "3"},
        )
        delete = client.post(f"/ui/deployments/{world.deployment.id}/delete", data={"csrf": csrf})
        assert [stop.status_code, scale.status_code, delete.status_code] == [403, 403, 403]
        # Reading stays open to viewers, the what-if table included.
        what_if = client.post(
            f"/ui/deployments/{world.deployment.id}/what-if",
            data={"csrf": csrf, "instances": "1,2", "load_rps": ""},
        )
        assert what_if.status_code == 200
    db.expire_all()
    assert db.get(TrainingRun, world.run.id).status == "running"  # type: ignore[union-attr]
    deployment = db.get(Deployment, world.deployment.id)
    assert deployment is not None
    assert (deployment.status, deployment.desired_instances) == ("in_service", 2)


def test_deployment_page_decisions_charts_scale_and_delete(
    as_owner: tuple[TestClient, str], world: World, db: Session
) -> None:
    client, csrf = as_owner
    base = f"/ui/deployments/{world.deployment.id}"
    page = client.get(base).text
    assert "scaling out: p95 would exceed the SLO" in page
    assert "1 → 2" in page
    assert page.count('class="chosen"') == 1  # the chosen row of the candidate table
    rows = client.get(f"{base}/decisions").text
    assert "Candidates considered" in rows
    charts = {c["id"]: c for c in client.get(f"{base}/charts.json").json()["charts"]}
    assert set(charts) == {"instances", "latency", "cost"}
    per_hour = [v for v in charts["cost"]["lines"][0]["values"] if v is not None]
    assert per_hour[0] * 2 == pytest.approx(per_hour[-1])  # 1 instance, then 2
    slo = next(line for line in charts["latency"]["lines"] if line["label"] == "SLO")
    assert set(slo["values"]) == {200.0}
    load = next(line for line in charts["instances"]["lines"] if line["axis"] == "right")
    assert [round(v) for v in load["values"] if v is not None] == [30, 32, 31, 33]  # per 10 s

    db.add(  # two days old: in the whole history (the default), not in the last day
        MetricPoint(
            project_id=world.project.id,
            subject_type="deployment",
            subject_id=world.deployment.id,
            name="instances",
            timestamp=utcnow() - timedelta(days=2),
            value=4.0,
        )
    )
    db.commit()
    served = {}
    for span in ("day", "all"):
        found = client.get(f"{base}/charts.json?span={span}").json()["charts"][0]
        assert found["id"] == "instances"
        served[span] = [v for v in found["lines"][1]["values"] if v is not None]
    assert served["all"][0] == 4.0
    assert 4.0 not in served["day"]
    assert client.get(f"{base}/charts.json?span=year").status_code == 404

    for bad in ("0", "99", "two", ""):
        answer = client.post(f"{base}/scale", data={"csrf": csrf, "desired_instances": bad})
        assert answer.status_code == 422, bad
    scaled = client.post(f"{base}/scale", data={"csrf": csrf, "desired_instances": "3"})
    assert scaled.status_code == 303
    db.expire_all()
    assert db.get(Deployment, world.deployment.id).desired_instances == 3  # type: ignore[union-attr]
    assert client.post(f"{base}/delete", data={"csrf": csrf}).status_code == 303
    db.expire_all()
    assert db.get(Deployment, world.deployment.id).status == "deleting"  # type: ignore[union-attr]


def test_what_if_form_validates_its_input(as_owner: tuple[TestClient, str], world: World) -> None:
    client, csrf = as_owner
    url = f"/ui/deployments/{world.deployment.id}/what-if"
    for instances, load in (("1,x", ""), ("", ""), ("1,99", ""), ("1", "-3"), ("1", "nan")):
        answer = client.post(url, data={"csrf": csrf, "instances": instances, "load_rps": load})
        assert answer.status_code == 422, (instances, load)
        assert "text/html" in answer.headers["content-type"]
    shown = client.post(url, data={"csrf": csrf, "instances": "1, 2", "load_rps": "12.5"})
    assert shown.status_code == 200
    assert "What if?" in shown.text


def test_compare_puts_parameters_side_by_side_and_marks_differences(
    as_owner: tuple[TestClient, str], world: World
) -> None:
    client, _ = as_owner
    page = client.get(f"/ui/compare?runs={world.run.id},{world.finished.id}")
    assert page.status_code == 200
    differs = page.text.split('class="differs"')
    assert len(differs) == 2  # lr differs, epochs does not
    assert differs[1].split("</tr>")[0].count("lr") == 1
    repeated = client.get(f"/ui/compare?runs={world.run.id}&runs={world.finished.id}")
    assert repeated.status_code == 200


UI_TARGETS = [
    "/ui/projects/{project}",
    "/ui/projects/{project}/runs",
    "/ui/runs/{run}",
    "/ui/runs/{run}/summary",
    "/ui/runs/{run}/charts.json",
    "/ui/runs/{run}/logs.json",
    "/ui/compare?runs={run}",
    "/ui/deployments/{deployment}",
    "/ui/deployments/{deployment}/summary",
    "/ui/deployments/{deployment}/decisions",
    "/ui/deployments/{deployment}/charts.json",
]
UI_WRITES = [
    "/ui/runs/{run}/stop",
    "/ui/deployments/{deployment}/scale",
    "/ui/deployments/{deployment}/delete",
    "/ui/deployments/{deployment}/what-if",
]


def _aim(template: str, world: World) -> str:
    return template.format(
        project=world.project.id, run=world.run.id, deployment=world.deployment.id
    )


def test_another_projects_key_gets_not_found_everywhere(
    settings: Settings, session_factory: sessionmaker[Session], world: World, db: Session
) -> None:
    with browser(settings, session_factory) as client:
        csrf = sign_in(client, world.outsider)
        for template in UI_TARGETS:
            answer = client.get(_aim(template, world))
            assert answer.status_code == 404, template
            assert "console-pages" not in answer.text
        for template in UI_WRITES:
            form = {"csrf": csrf, "desired_instances": "3", "instances": "1"}
            assert client.post(_aim(template, world), data=form).status_code == 404, template
    db.expire_all()
    assert db.get(TrainingRun, world.run.id).status == "running"  # type: ignore[union-attr]
    assert db.get(Deployment, world.deployment.id).status == "in_service"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "path",
    [
        "/ui/runs/not-a-uuid",
        f"/ui/runs/{uuid.uuid4()}",
        f"/ui/deployments/{uuid.uuid4()}/charts.json",
        "/ui/projects/12",
        f"/ui/compare?runs={uuid.uuid4()},junk",
        "/ui/compare",
        "/ui/projects/{project}?status=bogus",
        "/ui/projects/{project}?cursor=garbage",
    ],
)
def test_bad_addresses_get_a_page_never_a_500(
    as_owner: tuple[TestClient, str], world: World, path: str
) -> None:
    client, _ = as_owner
    answer = client.get(_aim(path, world))
    assert 400 <= answer.status_code < 500, answer.text
    assert "text/html" in answer.headers["content-type"]
