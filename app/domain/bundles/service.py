"""Code bundles: check and store an upload, record it, read it, and vouch for a run's code.

An upload is checked and written to the artifact store with no transaction open (a large
object to S3 may take a while); the row is then recorded in a short unit of work. The store
is content addressed, so a repeated or concurrent upload of the same bytes writes nothing new.
"""

from __future__ import annotations

import uuid

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.artifacts import ArtifactUnreadable, content_key, get_store, store_location
from app.artifacts.archive import ArchiveRefused, BundleLimits, inspect_archive, normalise
from app.domain.access import Principal, Role, authorize, visible
from app.domain.audit import service as audit
from app.domain.bundles import repository
from app.domain.bundles.models import CodeBundle
from app.domain.bundles.schemas import BUNDLE_SUFFIX, BundleRead, StoredBundle, Upload
from app.domain.pagination import PageRequest
from app.domain.runs.schemas import RunSpec
from app.errors import ServiceUnavailable, Unprocessable
from app.settings import Settings


def limits(settings: Settings) -> BundleLimits:
    """The archive limits of the settings."""
    return BundleLimits(
        max_files=settings.artifacts.bundle_max_files,
        max_unpacked_bytes=settings.artifacts.bundle_max_unpacked_bytes,
    )


def authorize_upload(session: Session, principal: Principal, project_id: uuid.UUID) -> None:
    """404 for a non-member, 403 below editor: checked before the body is read."""
    authorize(session, principal, project_id, Role.EDITOR)


def store_bundle(upload: Upload, settings: Settings) -> StoredBundle:
    """Check the archive, then store its bytes; 422 naming a bad member (nothing stored)."""
    try:
        with upload.path.open("rb") as handle:
            inspection = inspect_archive(handle, limits(settings))
    except ArchiveRefused as refused:
        extra = {"member": refused.member} if refused.member is not None else {}
        raise Unprocessable(str(refused), code="invalid_bundle", extra=extra) from refused
    try:
        get_store(settings).put(upload.path, upload.sha256, BUNDLE_SUFFIX)  # store_key(sha256)
    except ArtifactUnreadable as exc:
        raise ServiceUnavailable(
            f"The artifact store is unavailable ({exc}); retry later.",
            headers={"Retry-After": "5"},
        ) from exc
    return StoredBundle(
        sha256=upload.sha256,
        size_bytes=upload.size_bytes,
        file_count=len(inspection.files),
        unpacked_bytes=inspection.unpacked_bytes,
        manifest=sorted(set(inspection.files)),
    )


def record_bundle(
    session: Session, principal: Principal, project_id: uuid.UUID, stored: StoredBundle
) -> BundleRead:
    """The project's bundle of these bytes: the existing one, or a new row."""
    authorize(session, principal, project_id, Role.EDITOR)
    existing = repository.get_by_sha256(session, project_id, stored.sha256)
    if existing is not None:
        return BundleRead.model_validate(existing)
    bundle = CodeBundle(
        project_id=project_id,
        sha256=stored.sha256,
        size_bytes=stored.size_bytes,
        file_count=stored.file_count,
        unpacked_bytes=stored.unpacked_bytes,
        manifest=stored.manifest,
        created_by=principal.id,
    )
    try:
        with session.begin_nested():
            session.add(bundle)
            session.flush()
    except IntegrityError:
        # A concurrent upload of the same bytes won the unique (project_id, sha256).
        won = repository.get_by_sha256(session, project_id, stored.sha256)
        if won is None:
            raise
        return BundleRead.model_validate(won)
    audit.record(
        session,
        principal,
        "code_bundle.create",
        "code_bundle",
        bundle.id,
        project_id,
        {"sha256": bundle.sha256, "size_bytes": bundle.size_bytes},
    )
    return BundleRead.model_validate(bundle)


def get_bundle(session: Session, principal: Principal, bundle_id: uuid.UUID) -> BundleRead:
    """One bundle the caller may see; another project's answers as missing."""
    bundle = repository.get(session, bundle_id)
    return BundleRead.model_validate(
        visible(session, principal, bundle, Role.VIEWER, "Code bundle", bundle_id)
    )


def list_bundles(
    session: Session, principal: Principal, project_id: uuid.UUID, page: PageRequest
) -> tuple[list[BundleRead], str | None]:
    """A project's bundles, newest first."""
    authorize(session, principal, project_id, Role.VIEWER)
    rows, cursor = repository.list_for_project(session, project_id, page)
    return [BundleRead.model_validate(r) for r in rows], cursor


def check_run_code(
    session: Session, project_id: uuid.UUID, spec: RunSpec, backend: str, settings: Settings
) -> None:
    """A run's bundle is this project's, holds the entrypoint, and can reach the backend."""
    if spec.code_bundle_id is None:
        return
    bundle = repository.get(session, spec.code_bundle_id)
    if bundle is None or bundle.project_id != project_id:
        raise Unprocessable(
            f"spec.code_bundle_id {spec.code_bundle_id} is not a code bundle of this project.",
            code="invalid_spec",
        )
    try:
        entrypoint = normalise(spec.entrypoint or "")
    except ArchiveRefused:
        entrypoint = ""
    if entrypoint not in set(bundle.manifest):
        raise Unprocessable(
            f"spec.entrypoint {spec.entrypoint!r} is not a regular file in code bundle "
            f"{bundle.id} (paths are relative to the archive's root).",
            code="invalid_spec",
        )
    if backend == "sagemaker" and not store_location(settings).startswith("s3://"):
        raise Unprocessable(
            "SageMaker reads code bundles from S3: STRATUS_ARTIFACTS__STORE_URI must be an "
            "s3:// prefix for runs on sagemaker to use spec.code_bundle_id.",
            code="invalid_spec",
        )


def code_uri(session: Session, bundle_id: uuid.UUID, settings: Settings) -> str | None:
    """Where a run's bundle is in the artifact store (None when the row is gone)."""
    bundle = repository.get(session, bundle_id)
    if bundle is None:
        return None
    store = get_store(settings)
    return store.uri(store_key(bundle.sha256))


def store_key(sha256: str) -> str:
    """The artifact-store key of a bundle's bytes."""
    return content_key(sha256, BUNDLE_SUFFIX)
