"""Runs whose code comes from a bundle: unpacked into the job's own code directory (checked
again on the way), and a bundle uploaded over HTTP trained end to end on the local backend."""

from __future__ import annotations

import dataclasses
import hashlib
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import sessionmaker

from app.backends import registry
from app.backends.base import BackendError, JobState, TrainingJobSpec
from app.backends.local import LocalBackend
from app.domain.access import Role
from app.domain.metrics.models import MetricPoint
from app.domain.model_versions.models import ModelVersion
from app.domain.outbox import service as outbox
from app.domain.outbox.models import OutboxMessage
from app.domain.runs.models import TrainingRun
from app.main import create_app
from app.settings import get_settings
from tests.backends.local.conftest import job, wait_for, wait_job
from tests.bundles.archives import code_bundle, entry, targz
from tests.factories import make_key, make_project
from tests.workers.conftest import UnitOfWork
from workers.tasks import runs as run_tasks

TRAIN = b"""
import os, pathlib
print("loss=0.5", flush=True)
pathlib.Path(os.environ["SM_MODEL_DIR"], "model.txt").write_text("weights")
"""


def _bundle_job(name: str, code_uri: str) -> TrainingJobSpec:
    return dataclasses.replace(job(name, Path("/nonexistent")), source_dir=None, code_uri=code_uri)


def _bundle_file(directory: Path, data: bytes) -> str:
    path = directory / f"{hashlib.sha256(data).hexdigest()}.tar.gz"
    path.write_bytes(data)
    return path.as_uri()


@pytest.mark.slow
def test_a_bundle_is_unpacked_into_the_jobs_own_code_directory(
    backend: LocalBackend, tmp_path: Path
) -> None:
    uri = _bundle_file(tmp_path, code_bundle(TRAIN))
    spec = _bundle_job("bundle-1", uri)
    backend.submit_training(spec)
    status = wait_job(backend, "bundle-1")
    assert status.state == JobState.COMPLETED, status.failure_reason
    code = backend.work_dir / "jobs" / "bundle-1" / "code"
    assert sorted(p.relative_to(code).as_posix() for p in code.rglob("*")) == [
        "lib",
        "lib/util.py",
        "train.py",
    ]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (
            targz(entry("train.py", TRAIN), entry("x", linkname="../../etc", type=tarfile.SYMTYPE)),
            "'x'",
        ),
        (code_bundle(TRAIN, name="main.py"), "train.py"),
        (b"not a tarball", "gzip"),
    ],
)
def test_a_bad_bundle_fails_the_submit_and_leaves_no_job(
    backend: LocalBackend, tmp_path: Path, data: bytes, fragment: str
) -> None:
    spec = _bundle_job("bundle-2", _bundle_file(tmp_path, data))
    with pytest.raises(BackendError) as raised:
        backend.submit_training(spec)
    assert not raised.value.retryable
    assert fragment in str(raised.value)
    assert not (backend.work_dir / "jobs" / "bundle-2").exists()
    assert list((backend.work_dir / "jobs").iterdir()) == []


def test_a_missing_bundle_object_is_a_permanent_failure(
    backend: LocalBackend, tmp_path: Path
) -> None:
    spec = _bundle_job("bundle-3", (tmp_path / "gone.tar.gz").as_uri())
    with pytest.raises(BackendError, match="code bundle") as raised:
        backend.submit_training(spec)
    assert not raised.value.retryable


@pytest.fixture
def api(
    app_on_pg: None, pg_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    """The API on committed rows, with the worker's settings on the same data dir."""
    monkeypatch.setenv("STRATUS_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    app = create_app(get_settings(), sessionmaker(bind=pg_engine, expire_on_commit=False))
    with TestClient(app) as client:
        yield client
    get_settings.cache_clear()


@pytest.mark.slow
def test_a_bundle_uploaded_over_http_trains_on_the_local_backend(
    api: TestClient, committed: UnitOfWork, backend: LocalBackend
) -> None:
    with committed() as session:
        key = make_key(session)
        project_id = make_project(session, (key, Role.EDITOR)).id
    upload = api.post(
        f"/v1/projects/{project_id}/code-bundles",
        content=code_bundle(TRAIN),
        headers={**key.headers, "Content-Type": "application/gzip"},
    )
    assert upload.status_code == 201, upload.text
    spec = {
        "entrypoint": "train.py",
        "code_bundle_id": upload.json()["id"],
        "metric_definitions": [{"name": "loss", "regex": "loss=([0-9.]+)"}],
    }
    created = api.post(
        f"/v1/projects/{project_id}/runs",
        json={"name": "from-a-bundle", "spec": spec},
        headers=key.headers,
    )
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]
    with committed() as session:
        message_id = session.scalars(
            select(OutboxMessage.id).where(OutboxMessage.topic == outbox.RUN_SUBMIT)
        ).one()

    with registry.override("local", backend):
        run_tasks.submit_run(message_id)

        def finished() -> TrainingRun | None:
            run_tasks.poll_once("local")
            with committed() as session:
                run = session.get(TrainingRun, run_id)
                assert run is not None
                return run if run.status in ("completed", "failed", "stopped") else None

        run = wait_for(finished, timeout=60, every=0.3)
    assert run.status == "completed", run.failure_reason
    assert run.final_metrics == {"loss": 0.5}
    with committed() as session:
        model = session.scalars(select(ModelVersion)).one()
        assert str(model.source_run_id) == run_id
        names = session.scalars(select(MetricPoint.name).where(MetricPoint.subject_id == run.id))
        assert "loss" in set(names)
    download = api.get(f"/v1/models/{model.id}/artifact", headers=key.headers)
    assert download.status_code == 200, download.text
    assert download.headers["content-type"] == "application/gzip"
