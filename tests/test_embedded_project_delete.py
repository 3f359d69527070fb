"""Deleting a project on the embedded default (SQLite), with runs, bundles and deployments."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.domain.metrics.models import MetricPurge
from app.settings import Settings
from tests.bundles.archives import code_bundle
from tests.factories import LOCAL_SPEC
from tests.test_embedded_smoke import _admin


def test_a_project_with_runs_and_bundles_deletes_on_sqlite(
    sqlite_client: TestClient,
    sqlite_factory: sessionmaker[Session],
    sqlite_settings: Settings,
) -> None:
    admin = _admin(sqlite_factory, sqlite_settings)
    c = sqlite_client
    project = c.post("/v1/projects", json={"name": "gone"}, headers=admin).json()
    base = f"/v1/projects/{project['id']}"
    gzip = admin | {"Content-Type": "application/gzip"}
    assert c.post(f"{base}/code-bundles", content=code_bundle(), headers=gzip).status_code == 201
    run = c.post(f"{base}/runs", json={"name": "r", "spec": LOCAL_SPEC}, headers=admin).json()
    assert c.post(f"/v1/runs/{run['id']}/stop", headers=admin).status_code == 202

    deleted = c.delete(base, headers=admin)

    assert deleted.status_code == 204, deleted.text
    assert c.get(base, headers=admin).status_code == 404
    with sqlite_factory() as session:  # the run's points are queued for housekeeping
        assert session.scalar(select(func.count()).select_from(MetricPurge)) == 1
