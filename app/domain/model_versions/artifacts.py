"""A model version's artifact, for download: only from places Stratus itself writes.

A registration names any URI, so the URI alone does not make a file servable. A ``file://``
artifact is served when, after resolving symlinks, it lies in the local backend's directory
of a job of a run of the same project, or in the artifact store as an object of the same
project; an ``s3://`` artifact when it is such an object of an S3 store, or when a run of
Stratus wrote it (the version came from a run). Anything else answers 409 and says why.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from app.artifacts import (
    ArtifactMissing,
    ArtifactStream,
    ArtifactUnreadable,
    get_store,
    open_uri,
    sha256_of_key,
)
from app.backends.naming import run_id_of
from app.domain.access import Principal, Role, visible
from app.domain.bundles import repository as bundles_repo
from app.domain.model_versions import repository
from app.domain.model_versions.models import ModelVersion
from app.domain.runs import repository as runs_repo
from app.errors import BadGateway, Conflict, NotFound
from app.settings import Settings

GZIP = "application/gzip"
OCTETS = "application/octet-stream"


@dataclass(frozen=True)
class ArtifactDownload:
    """An opened artifact: its bytes, size when known, and the name to save it under."""

    stream: ArtifactStream
    filename: str
    media_type: str


def _refuse(model: ModelVersion, why: str) -> Conflict:
    return Conflict(
        f"The artifact of model version {model.id} is not served by Stratus: {why}.",
        code="artifact_not_served",
    )


def _store_object_of_project(
    session: Session, model: ModelVersion, settings: Settings, uri: str
) -> bool:
    """Whether ``uri`` is an object of the artifact store that this project owns."""
    sha256 = sha256_of_key(get_store(settings).key_of(uri) or "")
    if sha256 is None:
        return False
    return bundles_repo.get_by_sha256(session, model.project_id, sha256) is not None


def _job_file_of_project(
    session: Session, model: ModelVersion, settings: Settings, path: Path
) -> bool:
    """Whether ``path`` lies in the local backend's directory of a job of this project."""
    local = settings.backends.local
    jobs = Path(os.path.realpath(local.work_dir or settings.data_dir / "local")) / "jobs"
    if not path.is_relative_to(jobs) or path == jobs:
        return False
    run_id = run_id_of(path.relative_to(jobs).parts[0])
    run = runs_repo.get(session, run_id) if run_id is not None else None
    return run is not None and run.project_id == model.project_id


def _servable_uri(session: Session, model: ModelVersion, settings: Settings) -> str:
    uri = model.artifact_uri
    if uri.startswith("s3://"):
        if model.source_run_id is not None or _store_object_of_project(
            session, model, settings, uri
        ):
            return uri
        raise _refuse(model, "registered S3 artifacts are read from S3 directly")
    if uri.startswith("file://") or uri.startswith("/"):
        path = Path(os.path.realpath(uri.removeprefix("file://")))
        real = path.as_uri()
        if _job_file_of_project(session, model, settings, path):
            return real
        if _store_object_of_project(session, model, settings, real):
            return real
        raise _refuse(
            model, "only files in the local backend's job directories or the artifact store are"
        )
    raise _refuse(model, "its URI is neither file:// nor s3://")


def open_artifact(
    session: Session, principal: Principal, model_version_id: uuid.UUID, settings: Settings
) -> ArtifactDownload:
    """The artifact of a model version the caller may see, opened for streaming."""
    model = visible(
        session,
        principal,
        repository.get(session, model_version_id),
        Role.VIEWER,
        "Model version",
        model_version_id,
    )
    uri = _servable_uri(session, model, settings)
    session.close()  # no transaction stays open while the store (S3, perhaps) is asked
    try:
        stream = open_uri(uri, settings)
    except ArtifactMissing as exc:
        raise NotFound(
            f"The artifact of model version {model.id} is no longer at {model.artifact_uri}.",
            code="artifact_missing",
        ) from exc
    except ArtifactUnreadable as exc:
        raise BadGateway(f"The artifact could not be read: {exc}", code="unreadable") from exc
    basename = re.sub(r"[^A-Za-z0-9._-]", "_", uri.rstrip("/").rsplit("/", 1)[-1]) or "artifact"
    stem = f"{model.name}-v{model.version}"
    if basename.endswith((".tar.gz", ".tgz")):
        return ArtifactDownload(stream, f"{stem}.tar.gz", GZIP)
    return ArtifactDownload(stream, f"{stem}-{basename}", OCTETS)
