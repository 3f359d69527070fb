"""Model artifact download: members stream what Stratus's own runs and store wrote, and
nothing else a registration could name."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.backends.naming import job_name
from app.domain.access import Role
from app.settings import Settings
from tests.conftest import REDIS_URL, TEST_PEPPER
from tests.factories import make_key, make_model_version, make_project, make_run

ARTIFACT = b"\x1f\x8b" + os.urandom(3000)


@pytest.fixture
def settings(pg_url: str, tmp_path: Path) -> Settings:
    return Settings(
        env="test",
        database_url=pg_url,
        broker_url=os.environ.get("STRATUS_TEST_BROKER_URL", REDIS_URL),
        key_pepper=TEST_PEPPER,
        data_dir=tmp_path,
    )


@pytest.fixture
def world(db: Session, tmp_path: Path) -> dict[str, Any]:
    viewer, stranger = make_key(db, name="viewer"), make_key(db, name="stranger")
    project = make_project(db, (viewer, Role.VIEWER))
    other = make_project(db, (stranger, Role.OWNER))
    run = make_run(db, project, status="completed")
    their_run = make_run(db, other, status="completed")
    jobs = tmp_path / "local" / "jobs"
    for r in (run, their_run):
        (jobs / job_name(r.id)).mkdir(parents=True)
        (jobs / job_name(r.id) / "model.tar.gz").write_bytes(ARTIFACT)
    model = make_model_version(
        db,
        project,
        name="recs",
        source_run_id=run.id,
        artifact_uri=(jobs / job_name(run.id) / "model.tar.gz").as_uri(),
    )
    db.commit()
    return {
        "viewer": viewer,
        "stranger": stranger,
        "project": project,
        "model": model,
        "jobs": jobs,
        "their_run": their_run,
    }


def _get(client: TestClient, model_id: Any, key: Any) -> Any:
    return client.get(f"/v1/models/{model_id}/artifact", headers=key.headers)


def test_a_member_downloads_the_artifact_a_run_wrote(
    client: TestClient, world: dict[str, Any]
) -> None:
    r = _get(client, world["model"].id, world["viewer"])
    assert r.status_code == 200, r.text
    assert r.content == ARTIFACT
    assert r.headers["content-type"] == "application/gzip"
    assert r.headers["content-length"] == str(len(ARTIFACT))
    assert r.headers["content-disposition"] == 'attachment; filename="recs-v1.tar.gz"'


def test_a_non_member_gets_404_as_for_a_missing_version(
    client: TestClient, world: dict[str, Any]
) -> None:
    theirs = _get(client, world["model"].id, world["stranger"])
    missing = _get(client, uuid.uuid4(), world["stranger"])
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["detail"] == f"Model version {world['model'].id} not found."


@pytest.mark.parametrize(
    "where",
    ["/etc/passwd", "file:///etc/passwd", "symlink out of a job", "another project's job"],
)
def test_registered_paths_outside_stratus_are_refused(
    client: TestClient, db: Session, world: dict[str, Any], where: str
) -> None:
    uri = where
    if where == "symlink out of a job":
        link = world["jobs"] / job_name(world["model"].source_run_id) / "passwd.tar.gz"
        link.symlink_to("/etc/passwd")
        uri = link.as_uri()
    elif where == "another project's job":
        uri = (world["jobs"] / job_name(world["their_run"].id) / "model.tar.gz").as_uri()
    model = make_model_version(db, world["project"], name="sneaky", artifact_uri=uri)
    db.commit()
    r = _get(client, model.id, world["viewer"])
    assert r.status_code == 409, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "artifact_not_served"
    assert "root:" not in r.text


def test_an_artifact_that_is_gone_answers_404(client: TestClient, world: dict[str, Any]) -> None:
    Path(world["model"].artifact_uri.removeprefix("file://")).unlink()
    r = _get(client, world["model"].id, world["viewer"])
    assert r.status_code == 404, r.text
    assert r.json()["code"] == "artifact_missing"
