"""The artifact store on S3 (moto): objects, bundle uploads over HTTP, artifact downloads,
and a SageMaker job whose code is a bundle."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from fastapi.testclient import TestClient
from moto.sagemaker.models import SageMakerModelBackend
from sqlalchemy.orm import Session

from app import artifacts
from app.backends.s3_artifacts import S3ArtifactStore
from app.domain.access import Role
from app.domain.runs import lifecycle
from app.domain.runs.models import TrainingRun
from app.settings import Settings
from tests.backends.conftest import REGION, ROLE, make_backend
from tests.bundles.archives import code_bundle
from tests.conftest import REDIS_URL, TEST_PEPPER
from tests.factories import make_key, make_model_version, make_project, make_run

BUCKET = "stratus-code"
STORE = f"s3://{BUCKET}/bundles"


@pytest.fixture
def s3(aws: None) -> Iterator[Any]:
    client = boto3.client("s3", region_name=REGION)
    client.create_bucket(Bucket=BUCKET)
    artifacts.reset()  # no store client left over from another mock
    yield client
    artifacts.reset()


@pytest.fixture
def settings(pg_url: str, tmp_path: Path) -> Settings:
    return Settings(
        env="test",
        database_url=pg_url,
        broker_url=os.environ.get("STRATUS_TEST_BROKER_URL", REDIS_URL),
        key_pepper=TEST_PEPPER,
        data_dir=tmp_path,
        artifacts={"store_uri": STORE},
        backends={"sagemaker": {"region": REGION, "role_arn": ROLE}},
    )


def test_objects_are_content_addressed_under_the_prefix(s3: Any, tmp_path: Path) -> None:
    data = code_bundle()
    source = tmp_path / "upload"
    source.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    store = S3ArtifactStore(STORE, region=REGION)
    key = store.put(source, sha, ".tar.gz")
    assert key == f"sha256/{sha[:2]}/{sha}.tar.gz"
    assert store.uri(key) == f"s3://{BUCKET}/bundles/{key}"
    assert store.exists(key)
    assert not store.exists(f"sha256/00/{'0' * 64}.tar.gz")
    assert store.key_of(store.uri(key)) == key
    assert store.key_of(f"s3://elsewhere/bundles/{key}") is None
    stream = store.open(key)
    assert (b"".join(stream.chunks(1000)), stream.size) == (data, len(data))
    listed = s3.list_objects_v2(Bucket=BUCKET)["Contents"]
    assert [o["Key"] for o in listed] == [f"bundles/{key}"]
    with pytest.raises(artifacts.ArtifactMissing):
        artifacts.open_uri(f"s3://{BUCKET}/bundles/nothing.tar.gz", Settings())


@pytest.fixture
def editor(db: Session) -> Any:
    key = make_key(db)
    project = make_project(
        db,
        (key, Role.EDITOR),
        default_backend="sagemaker",
        backend_config={"sagemaker": {"s3_prefixes": ["s3://stratus-artifacts/"]}},
    )
    db.commit()
    return key, project


def test_an_upload_lands_in_s3_and_a_sagemaker_job_runs_it(
    s3: Any,
    client: TestClient,
    db: Session,
    editor: Any,
    settings: Settings,
    moto_sm: SageMakerModelBackend,
) -> None:
    key, project = editor
    data = code_bundle()
    upload = client.post(
        f"/v1/projects/{project.id}/code-bundles",
        content=data,
        headers={**key.headers, "Content-Type": "application/gzip"},
    )
    assert upload.status_code == 201, upload.text
    sha = upload.json()["sha256"]
    uri = f"s3://{BUCKET}/bundles/sha256/{sha[:2]}/{sha}.tar.gz"
    stored = s3.get_object(Bucket=BUCKET, Key=uri.removeprefix(f"s3://{BUCKET}/"))
    assert stored["Body"].read() == data

    spec = {
        "entrypoint": "train.py",
        "code_bundle_id": upload.json()["id"],
        "instance_type": "ml.m5.large",
        "framework": "pytorch",
        "framework_version": "2.1",
        "output_location": "s3://stratus-artifacts/runs",
    }
    run = client.post(
        f"/v1/projects/{project.id}/runs", json={"name": "r", "spec": spec}, headers=key.headers
    )
    assert run.status_code == 201, run.text

    plan = lifecycle.prepare_submit(db, uuid.UUID(run.json()["id"]), settings)
    assert plan is not None
    assert plan.spec.code_uri == uri
    make_backend().submit_training(plan.spec)
    job = moto_sm.training_jobs[plan.spec.job_name]
    assert job.hyper_parameters["sagemaker_submit_directory"] == uri
    assert job.hyper_parameters["sagemaker_program"] == "train.py"
    stored_run = db.get(TrainingRun, plan.run_id)
    assert stored_run is not None
    assert stored_run.status == "submitting"


def test_s3_artifacts_are_served_when_a_run_wrote_them(
    s3: Any, client: TestClient, db: Session, editor: Any
) -> None:
    key, project = editor
    s3.put_object(Bucket=BUCKET, Key="runs/job/output/model.tar.gz", Body=b"model-bytes")
    uri = f"s3://{BUCKET}/runs/job/output/model.tar.gz"
    run = make_run(db, project, status="completed")
    from_run = make_model_version(db, project, artifact_uri=uri, source_run_id=run.id)
    registered = make_model_version(db, project, artifact_uri=uri)
    db.commit()
    ok = client.get(f"/v1/models/{from_run.id}/artifact", headers=key.headers)
    assert ok.status_code == 200, ok.text
    assert ok.content == b"model-bytes"
    assert ok.headers["content-length"] == str(len(b"model-bytes"))
    refused = client.get(f"/v1/models/{registered.id}/artifact", headers=key.headers)
    assert refused.status_code == 409, refused.text
    assert "S3" in refused.json()["detail"]
