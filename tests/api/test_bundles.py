"""Code bundles through the HTTP API: upload, dedupe, limits, archive checks, authorization,
and runs that take their code from a bundle."""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.db import unit_of_work
from app.domain.access import Role
from app.domain.bundles import repository
from app.domain.bundles import service as bundles
from app.domain.bundles.models import CodeBundle
from app.domain.bundles.schemas import StoredBundle
from app.domain.runs import lifecycle
from app.settings import Settings
from tests.bundles.archives import TRAIN, code_bundle, entry, targz
from tests.conftest import REDIS_URL, TEST_PEPPER
from tests.factories import Key, make_key, make_project, make_run
from tests.workers.conftest import (
    UnitOfWork,
    committed,  # noqa: F401 - a shared fixture
)

GZIP = {"Content-Type": "application/gzip"}
MAX_BYTES = 64 * 1024
MAX_FILES = 20
MAX_UNPACKED = 256 * 1024


@pytest.fixture
def settings(pg_url: str, tmp_path: Path) -> Settings:
    """Small limits, and an artifact store of this test's own."""
    return Settings(
        env="test",
        database_url=pg_url,
        broker_url=os.environ.get("STRATUS_TEST_BROKER_URL", REDIS_URL),
        key_pepper=TEST_PEPPER,
        data_dir=tmp_path,
        api={"max_body_bytes": 2048},
        artifacts={
            "bundle_max_bytes": MAX_BYTES,
            "bundle_max_files": MAX_FILES,
            "bundle_max_unpacked_bytes": MAX_UNPACKED,
        },
    )


@pytest.fixture
def world(db: Session) -> dict[str, Any]:
    keys = {role: make_key(db, name=role) for role in ("viewer", "editor", "stranger")}
    project = make_project(db, (keys["viewer"], Role.VIEWER), (keys["editor"], Role.EDITOR))
    other = make_project(db, (keys["stranger"], Role.EDITOR))
    db.commit()
    return {"keys": keys, "project": project, "other": other}


def _url(project: Any) -> str:
    return f"/v1/projects/{project.id}/code-bundles"


def _upload(client: TestClient, project: Any, key: Key, body: bytes, **headers: str) -> Any:
    return client.post(_url(project), content=body, headers={**GZIP, **key.headers, **headers})


def _objects(root: Path) -> list[Path]:
    store = root / "artifacts"
    return [p for p in store.rglob("*") if p.is_file()] if store.exists() else []


def _rows(db: Session) -> int:
    return db.scalar(select(func.count()).select_from(CodeBundle)) or 0


def test_upload_stores_the_bundle_once_and_reads_it_back(
    client: TestClient, db: Session, world: dict[str, Any], tmp_path: Path
) -> None:
    editor, project = world["keys"]["editor"], world["project"]
    body = code_bundle()
    r = _upload(client, project, editor, body)
    assert r.status_code == 201, r.text
    bundle = r.json()
    assert bundle["sha256"] == hashlib.sha256(body).hexdigest()
    assert (bundle["size_bytes"], bundle["file_count"]) == (len(body), 2)
    assert bundle["unpacked_bytes"] == len(TRAIN) + len(b"X = 1\n")
    assert {"id", "created_at", "project_id"} <= set(bundle)

    # The object is in the store under its digest, private to this user.
    (obj,) = _objects(tmp_path)
    assert obj.read_bytes() == body
    assert obj.name == f"{bundle['sha256']}.tar.gz"
    assert stat.S_IMODE(obj.stat().st_mode) == 0o600
    for directory in (obj.parent, obj.parent.parent, tmp_path / "artifacts"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    row = db.get(CodeBundle, uuid.UUID(bundle["id"]))
    assert row is not None
    assert row.manifest == ["lib/util.py", "train.py"]

    # The same bytes again: the same bundle, no second row or object.
    again = _upload(client, project, editor, body, **{"Content-Type": "application/x-gzip"})
    assert again.status_code == 201, again.text
    assert again.json()["id"] == bundle["id"]
    assert _rows(db) == 1
    assert len(_objects(tmp_path)) == 1

    viewer = world["keys"]["viewer"]
    got = client.get(f"/v1/code-bundles/{bundle['id']}", headers=viewer.headers)
    assert got.status_code == 200
    assert got.json() == bundle
    second = _upload(client, project, editor, code_bundle(b"print(2)\n")).json()
    page = client.get(_url(project), params={"limit": 1}, headers=viewer.headers).json()
    assert [b["id"] for b in page["items"]] == [second["id"]]
    rest = client.get(
        _url(project), params={"cursor": page["next_cursor"]}, headers=viewer.headers
    ).json()
    assert [b["id"] for b in rest["items"]] == [bundle["id"]]
    assert rest["next_cursor"] is None


def test_the_same_bytes_in_another_project_are_that_projects_own_bundle(
    client: TestClient, db: Session, world: dict[str, Any], tmp_path: Path
) -> None:
    body = code_bundle()
    mine = _upload(client, world["project"], world["keys"]["editor"], body).json()
    theirs = _upload(client, world["other"], world["keys"]["stranger"], body).json()
    assert mine["id"] != theirs["id"]
    assert _rows(db) == 2
    assert len(_objects(tmp_path)) == 1  # content addressed: one object


def test_other_media_types_get_415(client: TestClient, world: dict[str, Any]) -> None:
    editor = world["keys"]["editor"]
    for media_type in ("application/json", "application/x-tar", ""):
        r = client.post(
            _url(world["project"]),
            content=code_bundle(),
            headers={**editor.headers, "Content-Type": media_type},
        )
        assert r.status_code == 415, r.text
        assert r.headers["content-type"] == "application/problem+json"


def test_a_bundle_may_be_larger_than_the_global_body_limit(
    client: TestClient, world: dict[str, Any]
) -> None:
    # 2 KiB is the API's limit in these settings; the bundle route has its own.
    body = code_bundle(os.urandom(16 * 1024).hex().encode())
    assert 2048 < len(body) < MAX_BYTES
    r = _upload(client, world["project"], world["keys"]["editor"], body)
    assert r.status_code == 201, r.text
    other = client.post(
        "/v1/projects", content=b"x" * 4096, headers=world["keys"]["editor"].headers
    )
    assert other.status_code == 413


def test_bodies_over_the_bundle_limit_get_413(
    client: TestClient, db: Session, world: dict[str, Any], tmp_path: Path
) -> None:
    editor, project = world["keys"]["editor"], world["project"]
    body = os.urandom(MAX_BYTES + 1)
    r = _upload(client, project, editor, body)
    assert r.status_code == 413, r.text
    assert r.headers["content-type"] == "application/problem+json"

    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_BYTES // 4096 + 2):
            yield os.urandom(4096)

    chunked = client.post(_url(project), content=chunks(), headers={**GZIP, **editor.headers})
    assert chunked.status_code == 413, chunked.text
    assert _rows(db) == 0
    assert _objects(tmp_path) == []


LINK = {"type": tarfile.SYMTYPE}
HARD = {"type": tarfile.LNKTYPE}
BAD_ARCHIVES = {
    "not gzip": (b"just some bytes, not an archive", None),
    "a plain tar": (targz(entry("train.py", TRAIN), gzip=False), None),
    "an absolute path": (
        targz(entry("train.py", TRAIN), entry("/etc/cron.d/x", b"x")),
        "/etc/cron.d/x",
    ),
    "a .. component": (
        targz(entry("train.py", TRAIN), entry("lib/../../x.py", b"x")),
        "lib/../../x.py",
    ),
    "a symlink out": (
        targz(entry("train.py", TRAIN), entry("lib/pw", linkname="../../etc/passwd", **LINK)),
        "lib/pw",
    ),
    "an absolute symlink": (
        targz(entry("train.py", TRAIN), entry("pw", linkname="/etc/passwd", **LINK)),
        "pw",
    ),
    "a hard link out": (
        targz(entry("train.py", TRAIN), entry("h", linkname="../outside", **HARD)),
        "h",
    ),
    "a fifo": (targz(entry("train.py", TRAIN), entry("pipe", type=tarfile.FIFOTYPE)), "pipe"),
    "a device": (
        targz(entry("train.py", TRAIN), entry("disk", type=tarfile.BLKTYPE, devmajor=8)),
        "disk",
    ),
    "too many members": (
        targz(*[entry(f"f{i:02}.py", b"x") for i in range(MAX_FILES + 1)]),
        f"f{MAX_FILES:02}.py",
    ),
    "too many unpacked bytes": (
        targz(entry("train.py", TRAIN), entry("big.bin", b"\0" * (MAX_UNPACKED + 1))),
        "big.bin",
    ),
    "no files": (targz(entry("empty/", type=tarfile.DIRTYPE)), None),
}


@pytest.mark.parametrize("case", sorted(BAD_ARCHIVES))
def test_bad_archives_get_422_naming_the_member_and_store_nothing(
    client: TestClient, db: Session, world: dict[str, Any], tmp_path: Path, case: str
) -> None:
    body, member = BAD_ARCHIVES[case]
    r = _upload(client, world["project"], world["keys"]["editor"], body)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert r.headers["content-type"] == "application/problem+json"
    assert problem["code"] == "invalid_bundle"
    if member is not None:
        assert member in problem["detail"]
        assert problem["member"] == member
    assert _rows(db) == 0
    assert _objects(tmp_path) == []


def test_a_link_inside_the_archive_is_allowed_and_not_a_file(
    client: TestClient, db: Session, world: dict[str, Any]
) -> None:
    body = targz(entry("train.py", TRAIN), entry("lib/main.py", linkname="../train.py", **LINK))
    r = _upload(client, world["project"], world["keys"]["editor"], body)
    assert r.status_code == 201, r.text
    row = db.get(CodeBundle, uuid.UUID(r.json()["id"]))
    assert row is not None
    assert row.manifest == ["train.py"]


def test_who_may_upload_and_read(
    client: TestClient, db: Session, world: dict[str, Any], tmp_path: Path
) -> None:
    keys, project = world["keys"], world["project"]
    viewer = _upload(client, project, keys["viewer"], code_bundle())
    assert viewer.status_code == 403, viewer.text
    stranger = _upload(client, project, keys["stranger"], code_bundle())
    assert stranger.status_code == 404, stranger.text
    assert client.post(_url(project), content=code_bundle(), headers=GZIP).status_code == 401
    assert _rows(db) == 0
    assert _objects(tmp_path) == []

    bundle = _upload(client, project, keys["editor"], code_bundle()).json()
    theirs = client.get(f"/v1/code-bundles/{bundle['id']}", headers=keys["stranger"].headers)
    missing = client.get(f"/v1/code-bundles/{uuid.uuid4()}", headers=keys["stranger"].headers)
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["detail"] == f"Code bundle {bundle['id']} not found."
    assert client.get(_url(project), headers=keys["stranger"].headers).status_code == 404


# --- runs that take their code from a bundle ----------------------------------------------------


def _run(client: TestClient, project: Any, key: Key, **spec: Any) -> Any:
    body = {"name": "r", "spec": {"entrypoint": "train.py", "instance_type": "local", **spec}}
    return client.post(f"/v1/projects/{project.id}/runs", json=body, headers=key.headers)


def test_a_run_names_a_bundle_of_its_project_with_the_entrypoint_in_it(
    client: TestClient, world: dict[str, Any]
) -> None:
    keys, project = world["keys"], world["project"]
    bundle = _upload(client, project, keys["editor"], code_bundle()).json()
    ok = _run(client, project, keys["editor"], code_bundle_id=bundle["id"])
    assert ok.status_code == 201, ok.text
    assert ok.json()["spec"]["code_bundle_id"] == bundle["id"]
    nested = _run(
        client, project, keys["editor"], code_bundle_id=bundle["id"], entrypoint="./lib/util.py"
    )
    assert nested.status_code == 201, nested.text

    missing = _run(client, project, keys["editor"], code_bundle_id=bundle["id"], entrypoint="x.py")
    assert missing.status_code == 422, missing.text
    assert "'x.py'" in missing.json()["detail"]
    assert "spec.entrypoint" in missing.json()["detail"]
    directory = _run(client, project, keys["editor"], code_bundle_id=bundle["id"], entrypoint="lib")
    assert directory.status_code == 422, directory.text

    # Another project's bundle is no bundle at all, for its editor too.
    theirs = _run(client, world["other"], keys["stranger"], code_bundle_id=bundle["id"])
    assert theirs.status_code == 422, theirs.text
    assert "spec.code_bundle_id" in theirs.json()["detail"]
    unknown = _run(client, project, keys["editor"], code_bundle_id=str(uuid.uuid4()))
    assert unknown.status_code == 422, unknown.text


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"source_dir": "/srv/code", "code_bundle_id": str(uuid.uuid4())}, "not both"),
        ({}, "code_bundle_id or source_dir"),
        ({"entrypoint": None, "image": "x/y:1", "code_bundle_id": str(uuid.uuid4())}, "entrypoint"),
    ],
)
def test_script_mode_takes_its_code_from_exactly_one_place(
    client: TestClient, world: dict[str, Any], spec: dict[str, Any], fragment: str
) -> None:
    r = _run(client, world["project"], world["keys"]["editor"], **spec)
    assert r.status_code == 422, r.text
    assert fragment in r.text


def test_an_image_run_needs_no_code(client: TestClient, world: dict[str, Any]) -> None:
    r = _run(client, world["project"], world["keys"]["editor"], entrypoint=None, image="x/y:1")
    # Refused on the local backend for its image, not for missing code.
    assert r.status_code == 422, r.text
    assert [e["loc"] for e in r.json()["errors"]] == [["body", "spec", "image"]]


def test_sagemaker_runs_need_the_store_on_s3(client: TestClient, world: dict[str, Any]) -> None:
    keys, project = world["keys"], world["project"]
    bundle = _upload(client, project, keys["editor"], code_bundle()).json()
    body = {
        "name": "r",
        "backend": "sagemaker",
        "spec": {
            "entrypoint": "train.py",
            "code_bundle_id": bundle["id"],
            "instance_type": "ml.m5.large",
            "framework": "pytorch",
        },
    }
    r = client.post(f"/v1/projects/{project.id}/runs", json=body, headers=keys["editor"].headers)
    assert r.status_code == 422, r.text
    assert "STRATUS_ARTIFACTS__STORE_URI" in r.json()["detail"]


def test_a_concurrent_upload_of_the_same_bytes_gets_the_winners_bundle(
    client: TestClient, db: Session, world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    editor, project = world["keys"]["editor"], world["project"]
    first = _upload(client, project, editor, code_bundle()).json()
    # The loser of the race looked before the winner's row existed, then hit the unique key.
    real = repository.get_by_sha256
    looks: list[object] = []

    def racing(*args: Any) -> CodeBundle | None:
        looks.append(args)
        return None if len(looks) == 1 else real(*args)

    monkeypatch.setattr(repository, "get_by_sha256", racing)
    again = _upload(client, project, editor, code_bundle())
    assert again.status_code == 201, again.text
    assert again.json()["id"] == first["id"]
    assert len(looks) == 2  # the first look missed; the unique key sent it to the second
    assert _rows(db) == 1


def test_a_run_whose_bundle_is_gone_fails_at_submit_instead_of_using_host_code(
    db: Session, world: dict[str, Any], settings: Settings
) -> None:
    spec = {"entrypoint": "train.py", "code_bundle_id": str(uuid.uuid4())}
    run = make_run(db, world["project"], spec=spec)
    assert lifecycle.prepare_submit(db, run.id, settings) is None
    db.refresh(run)
    assert (run.status, run.failure_reason) == ("failed", "its code bundle is gone")


def test_bundles_work_on_the_embedded_sqlite_database(
    sqlite_client: TestClient, sqlite_factory: sessionmaker[Session], sqlite_settings: Settings
) -> None:
    with unit_of_work(sqlite_factory) as session:
        key = make_key(session)
        project = make_project(session, (key, Role.EDITOR))
    body = code_bundle()
    first = sqlite_client.post(_url(project), content=body, headers={**GZIP, **key.headers})
    again = sqlite_client.post(_url(project), content=body, headers={**GZIP, **key.headers})
    assert first.status_code == again.status_code == 201, first.text
    assert first.json()["id"] == again.json()["id"]
    run = _run(sqlite_client, project, key, code_bundle_id=first.json()["id"])
    assert run.status_code == 201, run.text
    assert (sqlite_settings.data_dir / "artifacts").is_dir()


def test_concurrent_records_of_the_same_bytes_make_one_row(request: pytest.FixtureRequest) -> None:
    units: UnitOfWork = request.getfixturevalue("committed")
    with units() as session:
        key = make_key(session)
        project_id = make_project(session, (key, Role.EDITOR)).id
    stored = StoredBundle("ab" * 32, 10, 1, 5, ["train.py"])
    barrier = threading.Barrier(6)

    def record() -> uuid.UUID:
        barrier.wait()
        with units() as session:
            return bundles.record_bundle(session, key.principal, project_id, stored).id

    with ThreadPoolExecutor(6) as pool:
        ids = list(pool.map(lambda _: record(), range(6)))
    assert len(set(ids)) == 1
    with units() as session:
        assert _rows(session) == 1
