"""Tenant isolation of path-like fields: from another project's editor, and from a plain key
that makes a project of its own, no field of a run or a model version may name another
project's job directory, Stratus's data directory, the admin key or any host file outside the
admin's roots; no S3 outside the project's prefixes; no IAM role outside the admin's list.
Every attempt is a 422 (403 for an editor changing the project's identity) and writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.backends.naming import job_name
from app.domain.access import Role
from app.domain.audit.models import AuditEvent
from app.domain.model_versions.models import ModelVersion
from app.domain.outbox.models import OutboxMessage
from app.domain.projects.models import Project
from app.domain.runs import lifecycle
from app.domain.runs.models import TrainingRun
from app.main import create_app
from app.settings import Settings
from tests.factories import Key, make_key, make_project, make_run

VICTIM_PREFIX = "s3://shared-bucket/team-a/"
ATTACKER_PREFIX = "s3://shared-bucket/team-b/"
ALLOWED_ROLE = "arn:aws:iam::123456789012:role/team-b"
FIELDS = ("source_dir", "channel", "channel_uri", "output_location", "artifact_uri")


@dataclass
class Host:
    """The host as an attacker sees it: a root with legitimate code, and things to reach."""

    code: Path
    targets: dict[str, str]


@dataclass
class Attacker:
    key: Key
    project_id: str


@pytest.fixture
def host(tmp_path: Path, db: Session) -> Host:
    root = tmp_path / "root"
    code = root / "code"
    code.mkdir(parents=True)
    (code / "train.py").write_text("print('loss=0.1')\n")
    data_dir = root / "data"  # inside the root on purpose: reserved all the same
    victim = make_project(db, name="victim", backend_config=_prefixes(VICTIM_PREFIX))
    run = make_run(db, victim, status="completed")
    job_dir = data_dir / "local" / "jobs" / job_name(run.id)
    (job_dir / "code").mkdir(parents=True)
    (job_dir / "code" / "train.py").write_text("print('secret')\n")
    (job_dir / "model.tar.gz").write_bytes(b"weights")
    (data_dir / "admin-key").write_text("sk_admin\n")
    (root / "jobs-link").symlink_to(job_dir)
    (root / "etc-link").symlink_to("/etc")
    db.commit()
    targets = {
        "job dir": str(job_dir),
        "job dir uri": job_dir.as_uri(),
        "job artifact": str(job_dir / "model.tar.gz"),
        "data dir": str(data_dir),
        "admin key": str(data_dir / "admin-key"),
        "passwd": "/etc/passwd",
        "environ": "/proc/self/environ",
        "link to a job dir": str(root / "jobs-link"),
        "link out of the root": str(root / "etc-link" / "passwd"),
        "dot-dot": f"{root}/code/../data/local/jobs",
        "dot-dot out": f"{root}/../../etc/passwd",
        "relative": "data/local/jobs",
        "relative dot-dot": "../data",
        "home": "~/.ssh",
    }
    return Host(code=code, targets=targets)


def _prefixes(*prefixes: str) -> dict[str, Any]:
    return {"sagemaker": {"s3_prefixes": list(prefixes)}}


@pytest.fixture
def app_client(
    settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path
) -> Iterator[TestClient]:
    """The API with one host root holding the data dir; one allowed IAM role."""
    local = settings.backends.local.model_copy(update={"host_roots": [tmp_path / "root"]})
    sagemaker = settings.backends.sagemaker.model_copy(update={"allowed_role_arns": [ALLOWED_ROLE]})
    backends = settings.backends.model_copy(update={"local": local, "sagemaker": sagemaker})
    configured = settings.model_copy(
        update={"data_dir": tmp_path / "root" / "data", "backends": backends}
    )
    with TestClient(create_app(configured, session_factory)) as client:
        yield client


@pytest.fixture
def editor(db: Session) -> Attacker:
    """An editor of a second project."""
    key = make_key(db, name="editor-b")
    project = make_project(
        db, (key, Role.EDITOR), name="team-b", backend_config=_prefixes(ATTACKER_PREFIX)
    )
    db.commit()
    return Attacker(key, str(project.id))


@pytest.fixture
def self_made(app_client: TestClient, db: Session) -> Attacker:
    """A plain key that creates a project of its own, and so owns it."""
    key = make_key(db, name="plain")
    db.commit()
    r = app_client.post("/v1/projects", json={"name": "mine"}, headers=key.headers)
    assert r.status_code == 201, r.text
    return Attacker(key, r.json()["id"])


def _counts(db: Session) -> tuple[int, ...]:
    db.expire_all()
    models = (TrainingRun, ModelVersion, OutboxMessage, AuditEvent, Project)
    return tuple(db.scalar(select(func.count()).select_from(m)) or 0 for m in models)


def _attempt(client: TestClient, who: Attacker, host: Host, field: str, target: str) -> Any:
    """One request putting ``target`` in ``field``; the problem's field name is expected."""
    if field == "artifact_uri":
        url = f"/v1/projects/{who.project_id}/models"
        return client.post(url, json={"name": "m", "artifact_uri": target}, headers=who.key.headers)
    spec: dict[str, Any] = {"entrypoint": "train.py", "source_dir": str(host.code)}
    if field == "source_dir":
        spec["source_dir"] = target
    elif field == "channel":
        spec["input_channels"] = {"train": target}
    elif field == "channel_uri":
        spec["input_channels"] = {"train": "file://" + target}
    else:
        spec["output_location"] = target
    url = f"/v1/projects/{who.project_id}/runs"
    return client.post(url, json={"name": "r", "spec": spec}, headers=who.key.headers)


PROBLEM_FIELD = {
    "source_dir": "spec.source_dir",
    "channel": "spec.input_channels.train",
    "channel_uri": "spec.input_channels.train",
    "output_location": "spec.output_location",
    "artifact_uri": "artifact_uri",
}


@pytest.mark.parametrize("attacker", ["editor", "self_made"])
def test_no_path_field_reaches_outside_the_roots(
    app_client: TestClient,
    db: Session,
    host: Host,
    attacker: str,
    request: pytest.FixtureRequest,
) -> None:
    who: Attacker = request.getfixturevalue(attacker)
    # The same request with a legitimate path works: the refusals below are about the paths.
    ok = _attempt(app_client, who, host, "source_dir", str(host.code))
    assert ok.status_code == 201, ok.text
    before = _counts(db)
    for field in FIELDS:
        for name, target in host.targets.items():
            if field == "channel_uri" and not target.startswith("/"):
                continue  # a relative file:// URI is no URI at all (the channel case covers it)
            r = _attempt(app_client, who, host, field, target)
            assert r.status_code == 422, f"{field} = {name} ({target}): {r.status_code} {r.text}"
            assert r.headers["content-type"] == "application/problem+json"
            assert PROBLEM_FIELD[field] in r.json()["detail"], f"{field} = {name}: {r.text}"
    assert _counts(db) == before


def test_host_path_refusals_say_where_host_paths_may_lie(
    app_client: TestClient, host: Host, editor: Attacker
) -> None:
    r = _attempt(app_client, editor, host, "source_dir", host.targets["job dir"])
    assert "STRATUS_BACKENDS__LOCAL__HOST_ROOTS" in r.json()["detail"]
    assert "code bundle" in r.json()["detail"]
    r = _attempt(app_client, editor, host, "source_dir", "code")
    assert "relative" in r.json()["detail"]
    assert "absolute path under a host root" in r.json()["detail"]


def test_an_entrypoint_linking_out_of_its_source_dir_is_refused(
    app_client: TestClient, db: Session, host: Host, editor: Attacker
) -> None:
    (host.code / "evil.py").symlink_to("/etc/passwd")
    before = _counts(db)
    spec = {"entrypoint": "evil.py", "source_dir": str(host.code)}
    r = app_client.post(
        f"/v1/projects/{editor.project_id}/runs",
        json={"name": "r", "spec": spec},
        headers=editor.key.headers,
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["body", "spec", "entrypoint"]
    assert "links out of source_dir" in r.json()["detail"]
    assert _counts(db) == before


def test_a_role_in_the_run_spec_is_refused(
    app_client: TestClient, db: Session, host: Host, editor: Attacker
) -> None:
    before = _counts(db)
    spec = {
        "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/train:1",
        "instance_type": "ml.m5.xlarge",
        "role_arn": "arn:aws:iam::123456789012:role/admin",
    }
    r = app_client.post(
        f"/v1/projects/{editor.project_id}/runs",
        json={"name": "r", "backend": "sagemaker", "spec": spec},
        headers=editor.key.headers,
    )
    assert r.status_code == 422
    assert "role_arn" in r.text
    assert _counts(db) == before


def test_only_owners_set_the_identity_and_only_to_allowed_roles(
    app_client: TestClient, db: Session, editor: Attacker, self_made: Attacker
) -> None:
    before = _counts(db)
    config = {"sagemaker": {"role_arn": ALLOWED_ROLE, "s3_prefixes": [VICTIM_PREFIX]}}
    r = app_client.patch(
        f"/v1/projects/{editor.project_id}",
        json={"backend_config": config},
        headers=editor.key.headers,
    )
    assert r.status_code == 403
    admin_role = {"sagemaker": {"role_arn": "arn:aws:iam::123456789012:role/admin"}}
    r = app_client.patch(
        f"/v1/projects/{self_made.project_id}",
        json={"backend_config": admin_role},
        headers=self_made.key.headers,
    )
    assert r.status_code == 422
    assert "STRATUS_BACKENDS__SAGEMAKER__ALLOWED_ROLE_ARNS" in r.json()["detail"]
    r = app_client.post(
        "/v1/projects",
        json={"name": "escalate", "backend_config": admin_role},
        headers=self_made.key.headers,
    )
    assert r.status_code == 422
    assert _counts(db) == before
    stored = db.scalars(select(Project.backend_config).where(Project.name == "team-b")).one()
    assert stored == _prefixes(ATTACKER_PREFIX)


def _sagemaker_run(channel: str) -> dict[str, Any]:
    spec = {
        "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/train:1",
        "instance_type": "ml.m5.xlarge",
        "input_channels": {"train": channel},
        "output_location": ATTACKER_PREFIX + "out/",
    }
    return {"name": "r", "backend": "sagemaker", "spec": spec}


def test_s3_uris_stay_under_the_projects_prefixes(
    app_client: TestClient, db: Session, editor: Attacker, self_made: Attacker
) -> None:
    runs = f"/v1/projects/{editor.project_id}/runs"
    ok = app_client.post(
        runs, json=_sagemaker_run(ATTACKER_PREFIX + "train/"), headers=editor.key.headers
    )
    assert ok.status_code == 201, ok.text
    before = _counts(db)
    for uri in (
        VICTIM_PREFIX + "train/",
        "s3://shared-bucket/team-b",  # the prefix without its boundary
        "s3://shared-bucket/team-bx/train/",
        "s3://other-bucket/team-b/train/",
    ):
        r = app_client.post(runs, json=_sagemaker_run(uri), headers=editor.key.headers)
        assert r.status_code == 422, uri
        assert r.json()["errors"][0]["loc"] == ["body", "spec", "input_channels", "train"]
        r = app_client.post(
            f"/v1/projects/{editor.project_id}/models",
            json={"name": "m", "artifact_uri": uri + "model.tar.gz"},
            headers=editor.key.headers,
        )
        assert r.status_code == 422, uri
    # A project whose owners set no prefixes may name no S3 at all, and is told why.
    r = app_client.post(
        f"/v1/projects/{self_made.project_id}/models",
        json={"name": "m", "artifact_uri": VICTIM_PREFIX + "model.tar.gz"},
        headers=self_made.key.headers,
    )
    assert r.status_code == 422
    assert "an owner must set backend_config.sagemaker.s3_prefixes" in r.json()["detail"]
    assert _counts(db) == before


def test_rows_written_before_these_rules_get_no_role_of_their_own(
    db: Session, settings: Settings
) -> None:
    """A stored spec's role_arn is ignored; a project role the admin no longer allows fails
    the run at submit instead of being assumed."""
    sagemaker = settings.backends.sagemaker.model_copy(
        update={"role_arn": ALLOWED_ROLE.replace("team-b", "default")}
    )
    configured = settings.model_copy(
        update={"backends": settings.backends.model_copy(update={"sagemaker": sagemaker})}
    )
    spec = {
        "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/train:1",
        "instance_type": "ml.m5.xlarge",
        "role_arn": "arn:aws:iam::123456789012:role/admin",
    }
    plain = make_project(db)
    legacy = make_run(db, plain, backend="sagemaker", spec=spec)
    dropped = make_project(
        db, backend_config={"sagemaker": {"role_arn": "arn:aws:iam::123456789012:role/gone"}}
    )
    orphan = make_run(db, dropped, backend="sagemaker", spec=spec)
    db.commit()
    plan = lifecycle.prepare_submit(db, legacy.id, configured)
    assert plan is not None
    assert plan.spec.role_arn == sagemaker.role_arn
    assert lifecycle.prepare_submit(db, orphan.id, configured) is None
    db.refresh(orphan)
    assert orphan.status == "failed"
    assert "no longer allowed" in (orphan.failure_reason or "")
